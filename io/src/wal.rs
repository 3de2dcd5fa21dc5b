//! Raft's durable state in `-data-dir`: a segmented write-ahead log of CRC32C-framed records,
//! with group commit.
//!
//! Every [`Persist`] the core issues becomes records appended to the newest segment: a hard
//! state, a truncation, entries (the record format is the core's [`journal`], pure code, fuzzed). Nothing is rewritten in place, so a crash can only leave a torn
//! tail, which recovery cuts off; a bad record with valid data after it, or in an older segment,
//! is corruption, and recovery refuses it with the segment and offset rather than guess.
//!
//! ```text
//! segment = record*       wal-<seq:016>.log, a new one past SEGMENT_BYTES_MAX
//! ```
//!
//! Group commit: [`GroupCommit::run`] takes every persist queued while the previous fdatasync
//! ran, writes them all, and covers them with one fdatasync, then acknowledges the newest. Under
//! load, one fsync serves many proposals; idle, a single write is synced at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::BytesMut;
use muster_core::raft::{journal, Persist, PersistId, Restored};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system failed.
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// A record is damaged where a crash cannot have left it.
    #[error("write-ahead log is corrupt in {} at byte {offset}: {why}; refusing to start rather than lose acknowledged writes", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        why: String,
    },
}

/// An open log, positioned to append.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: File,
    segment_seq: u64,
    segment_bytes: u64,
    segment_bytes_max: u64,
    buf: BytesMut,
    syncs: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and recovers what it holds: the last hard state and
    /// the entries, with every truncation applied. A torn tail is cut off.
    pub fn open(dir: impl Into<PathBuf>) -> Result<(Wal, Restored), WalError> {
        Wal::open_with_segment_size(dir, SEGMENT_BYTES_MAX)
    }

    /// [`Wal::open`] with another segment size (tests use small ones to exercise rotation).
    pub fn open_with_segment_size(
        dir: impl Into<PathBuf>,
        segment_bytes_max: u64,
    ) -> Result<(Wal, Restored), WalError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let segments = list_segments(&dir)?;
        let mut restored = Restored::default();
        let mut last = None;
        for (i, &(seq, ref path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let valid_bytes = replay_segment(path, is_last, &mut restored)?;
            last = Some((seq, path.clone(), valid_bytes));
        }
        let (segment_seq, file, segment_bytes) = match last {
            Some((seq, path, valid_bytes)) => {
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                if file.metadata()?.len() > valid_bytes {
                    tracing::warn!(segment = %path.display(), valid_bytes, "wal: cutting off a torn tail");
                    file.set_len(valid_bytes)?;
                    file.sync_all()?;
                }
                let mut file = file;
                file.seek(SeekFrom::End(0))?;
                (seq, file, valid_bytes)
            }
            None => {
                let file = create_segment(&dir, 1)?;
                (1, file, 0)
            }
        };
        let wal =
            Wal { dir, file, segment_seq, segment_bytes, segment_bytes_max, buf: BytesMut::new(), syncs: 0 };
        Ok((wal, restored))
    }

    /// Appends the records of `persist` (written, not yet synced).
    pub fn append(&mut self, persist: &Persist) -> io::Result<()> {
        self.buf.clear();
        journal::encode_persist(persist, &mut self.buf);
        if self.segment_bytes > 0 && self.segment_bytes + self.buf.len() as u64 > self.segment_bytes_max {
            self.rotate()?;
        }
        self.file.write_all(&self.buf)?;
        self.segment_bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable (fdatasync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.syncs += 1;
        Ok(())
    }

    /// How many fdatasyncs this log has issued since it was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Closes the current segment (synced) and starts the next; the directory entry of the new
    /// segment is made durable before anything is written to it.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.segment_seq += 1;
        self.file = create_segment(&self.dir, self.segment_seq)?;
        self.segment_bytes = 0;
        Ok(())
    }
}

/// Runs group commit over a log: persists arrive on a channel; each round writes every persist
/// queued so far, syncs once, and reports the newest id made durable with the number of
/// persists it covered. Returns when the channel closes (after a final sync), or on the first
/// I/O error, which the caller must treat as fatal: what was acknowledged stays acknowledged,
/// but nothing more may be.
#[derive(Debug)]
pub struct GroupCommit;

impl GroupCommit {
    /// The loop; run it on a thread of its own (it blocks on the disk).
    pub fn run(
        wal: &mut Wal,
        persists: mpsc::Receiver<Persist>,
        mut on_durable: impl FnMut(PersistId, usize),
    ) -> io::Result<()> {
        while let Ok(first) = persists.recv() {
            let mut newest = first.id;
            wal.append(&first)?;
            let mut covered = 1;
            while let Ok(next) = persists.try_recv() {
                newest = next.id;
                wal.append(&next)?;
                covered += 1;
            }
            wal.sync()?;
            on_durable(newest, covered);
        }
        Ok(())
    }
}

/// Replays one segment file into `restored`; returns how many bytes of it are valid.
fn replay_segment(path: &Path, is_last: bool, restored: &mut Restored) -> Result<u64, WalError> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    journal::replay(&bytes, is_last, restored).map_err(|(offset, why)| corrupt(path, offset, why))
}

fn corrupt(path: &Path, offset: usize, why: String) -> WalError {
    WalError::Corrupt { segment: path.to_owned(), offset: offset as u64, why }
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(seq) = name.strip_prefix("wal-").and_then(|n| n.strip_suffix(".log")) {
            if let Ok(seq) = seq.parse::<u64>() {
                segments.push((seq, path));
            }
        }
    }
    segments.sort();
    Ok(segments)
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let path = dir.join(format!("wal-{seq:016}.log"));
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    // The new name must survive a crash before any record in it is acknowledged.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use muster_core::raft::{Entry, HardState, Index, Payload};

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("muster-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A command entry, or a no-op for an empty text.
    fn entry(index: Index, term: u64, text: &'static str) -> Entry {
        match text {
            "" => Entry { index, term, payload: Payload::Noop },
            text => Entry::command(index, term, Bytes::from_static(text.as_bytes())),
        }
    }

    fn persist(
        id: u64,
        hard: Option<HardState>,
        truncate_from: Option<Index>,
        entries: Vec<Entry>,
    ) -> Persist {
        Persist { id: PersistId::from_raw(id), hard_state: hard, truncate_from, entries }
    }

    #[test]
    fn what_is_appended_and_synced_is_recovered_with_truncations_applied() {
        let dir = temp_dir("recover");
        let (mut wal, restored) = Wal::open(&dir).unwrap();
        assert_eq!(restored, Restored::default());
        let hard = HardState { term: 2, vote: Some(3) };
        wal.append(&persist(1, Some(hard), None, vec![entry(1, 1, ""), entry(2, 1, "a"), entry(3, 1, "b")]))
            .unwrap();
        wal.append(&persist(2, None, Some(3), vec![entry(3, 2, "c")])).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, restored) = Wal::open(&dir).unwrap();
        assert_eq!(restored.hard_state, hard);
        assert_eq!(restored.entries, [entry(1, 1, ""), entry(2, 1, "a"), entry(3, 2, "c")]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appending_resumes_after_it() {
        let dir = temp_dir("torn");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.append(&persist(1, None, None, vec![entry(1, 1, "a"), entry(2, 1, "b")])).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let segment = dir.join("wal-0000000000000001.log");
        let full = fs::metadata(&segment).unwrap().len();
        // The second record loses its last 3 bytes, as a crash mid-write would leave it.
        OpenOptions::new().write(true).open(&segment).unwrap().set_len(full - 3).unwrap();
        let (mut wal, restored) = Wal::open(&dir).unwrap();
        assert_eq!(restored.entries, [entry(1, 1, "a")]);
        wal.append(&persist(2, None, None, vec![entry(2, 1, "c")])).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, restored) = Wal::open(&dir).unwrap();
        assert_eq!(restored.entries, [entry(1, 1, "a"), entry(2, 1, "c")]);
    }

    #[test]
    fn a_corrupt_record_with_valid_records_after_it_is_refused() {
        let dir = temp_dir("corrupt");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.append(&persist(
            1,
            None,
            None,
            vec![entry(1, 1, "aaaa"), entry(2, 1, "bbbb"), entry(3, 1, "cccc")],
        ))
        .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let segment = dir.join("wal-0000000000000001.log");
        let mut bytes = fs::read(&segment).unwrap();
        let second = bytes.len() / 3 + 10;
        bytes[second] ^= 0xFF;
        fs::write(&segment, &bytes).unwrap();
        let error = Wal::open(&dir).unwrap_err();
        assert!(matches!(error, WalError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("refusing to start"), "{error}");
    }

    #[test]
    fn segments_rotate_and_replay_in_order() {
        let dir = temp_dir("rotate");
        let (mut wal, _) = Wal::open_with_segment_size(&dir, 100).unwrap();
        for i in 1..=20 {
            wal.append(&persist(i, None, None, vec![entry(i, 1, "0123456789")])).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        assert!(list_segments(&dir).unwrap().len() > 2);
        let (_, restored) = Wal::open_with_segment_size(&dir, 100).unwrap();
        assert_eq!(restored.entries.len(), 20);
        assert!(restored.entries.iter().enumerate().all(|(i, e)| e.index == i as u64 + 1));
    }

    #[test]
    fn group_commit_covers_everything_queued_with_one_sync() {
        let dir = temp_dir("group");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 1..=50 {
            tx.send(persist(i, None, None, vec![entry(i, 1, "x")])).unwrap();
        }
        drop(tx);
        let mut acks = Vec::new();
        GroupCommit::run(&mut wal, rx, |id, covered| acks.push((id.get(), covered))).unwrap();
        assert_eq!(acks, [(50, 50)], "everything queued rode one fdatasync");
        assert_eq!(wal.syncs(), 1);
    }
}
