//! The directory a log lives in, as the log uses it: named files that are appended to, synced,
//! cut, renamed and removed. The agent's is a real directory ([`FsDir`]); the simulator's keeps
//! the files in memory, loses what was not synced when its server crashes and fails on demand,
//! so the log's recovery is tested against the crashes it is written for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// A directory of named files, with the durability a log needs: data written is durable once
/// its file is synced; a name created, renamed or removed is durable once the directory is.
pub trait LogDir {
    /// Where file `name` lives, for messages.
    fn path(&self, name: &str) -> PathBuf;
    /// The names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole contents of file `name`.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates file `name`, empty; an error if it exists.
    fn create(&mut self, name: &str) -> io::Result<()>;
    /// Appends `bytes` to file `name` (not yet durable).
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes file `name`'s data durable (fdatasync).
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts file `name` to `len` bytes, durably.
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Renames file `from` to `to`, replacing it.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Removes file `name`.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Makes the directory's names durable (fsync of the directory).
    fn sync_dir(&mut self) -> io::Result<()>;
    /// How long the next sync should be made to take, where the disk is simulated and its
    /// syncs cost nothing (the writer waits this long first, so a crash can land in between).
    /// A real disk takes its own time: zero.
    fn sync_delay(&mut self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A real directory. The file last appended to stays open, so that appending to the newest
/// segment costs a write, not an open.
#[derive(Debug)]
pub struct FsDir {
    dir: PathBuf,
    open: Option<(String, File)>,
}

impl FsDir {
    /// The directory `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FsDir> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FsDir { dir, open: None })
    }

    /// File `name`, opened for appending (the open one if it is that).
    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(open, _)| open != name) {
            let file = OpenOptions::new().append(true).open(self.dir.join(name))?;
            self.open = Some((name.to_owned(), file));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }

    /// Closes file `name` if it is the open one (before it is renamed or removed).
    fn close(&mut self, name: &str) {
        if self.open.as_ref().is_some_and(|(open, _)| open == name) {
            self.open = None;
        }
    }
}

impl LogDir for FsDir {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let file = OpenOptions::new().append(true).create_new(true).open(self.dir.join(name))?;
        self.open = Some((name.to_owned(), file));
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let file = self.file(name)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.close(from);
        self.close(to);
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.close(name);
        fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}
