//! `-log-file` with Consul's rotation: the log goes to the named file until it holds
//! `-log-rotate-bytes` (0: no limit) or has been open `-log-rotate-duration` (24 h by
//! default); it is then renamed `<name>-<Unix ns>.<ext>` beside it and a fresh file is opened.
//! `-log-rotate-max-files` keeps that many renamed files (0: all of them; -1: none).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How old the file may grow by default before it is rotated (Consul's `log_rotate_duration`).
pub const ROTATE_DURATION_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// When to rotate, and how many rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate past this many bytes; 0 is no limit.
    pub max_bytes: u64,
    /// Rotate once the file has been open this long.
    pub max_age: Duration,
    /// Rotated files kept: 0 keeps all, -1 none.
    pub max_files: i64,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation { max_bytes: 0, max_age: ROTATE_DURATION_DEFAULT, max_files: 0 }
    }
}

/// The log file, rotated as [`Rotation`] says.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    opened: Instant,
    written_bytes: u64,
    rotation: Rotation,
}

impl RotatingFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written_bytes = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_owned(), file, opened: Instant::now(), written_bytes, rotation })
    }

    fn due(&self, next: usize) -> bool {
        let full = self.rotation.max_bytes > 0
            && self.written_bytes > 0
            && self.written_bytes + next as u64 > self.rotation.max_bytes;
        full || self.opened.elapsed() >= self.rotation.max_age
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let (stem, ext) = self.stem_and_extension();
        let rotated = self.path.with_file_name(format!("{stem}-{nanos}{ext}"));
        std::fs::rename(&self.path, rotated)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.opened = Instant::now();
        self.written_bytes = 0;
        self.prune()
    }

    fn stem_and_extension(&self) -> (String, String) {
        let stem = self.path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let ext = self.path.extension().map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
        (stem, ext)
    }

    /// The rotated files beside the log, oldest first.
    pub fn rotated(&self) -> io::Result<Vec<PathBuf>> {
        let (stem, ext) = self.stem_and_extension();
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut found: Vec<(u128, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let nanos =
                    name.strip_prefix(&format!("{stem}-"))?.strip_suffix(&ext)?.parse::<u128>().ok()?;
                Some((nanos, entry.path()))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, path)| path).collect())
    }

    fn prune(&self) -> io::Result<()> {
        let keep = match self.rotation.max_files {
            0 => return Ok(()),
            n if n < 0 => 0,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let rotated = self.rotated()?;
        for old in rotated.iter().take(rotated.len().saturating_sub(keep)) {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.due(buf.len()) {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.written_bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_past_its_size_and_old_ones_are_pruned() {
        let dir = std::env::temp_dir().join(format!("muster-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.log");
        let rotation = Rotation { max_bytes: 20, max_age: Duration::from_secs(3600), max_files: 2 };
        let mut log = RotatingFile::open(&path, rotation).unwrap();
        for line in 0..5 {
            log.write_all(format!("line {line} of 12\n").as_bytes()).unwrap();
        }
        // Each 13-byte line: one per file (two would pass 20 bytes); four rotations, two kept.
        let rotated = log.rotated().unwrap();
        assert_eq!(rotated.len(), 2);
        assert_eq!(std::fs::read_to_string(&rotated[0]).unwrap(), "line 2 of 12\n");
        assert_eq!(std::fs::read_to_string(&rotated[1]).unwrap(), "line 3 of 12\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 4 of 12\n");

        let none_kept = Rotation { max_files: -1, ..rotation };
        let mut log = RotatingFile::open(&path, none_kept).unwrap();
        log.write_all(b"one more line here\n").unwrap();
        assert!(log.rotated().unwrap().is_empty(), "-1 keeps no rotated file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
