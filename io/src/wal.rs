//! Raft's durable state in `-data-dir`: a segmented write-ahead log of CRC32C-framed records,
//! with group commit, and snapshot files.
//!
//! Every [`Persist`] the core issues becomes records appended to the newest segment: a hard
//! state, a truncation, entries (the record format is the core's [`journal`], pure code,
//! fuzzed). Nothing is rewritten in place, so a crash can only leave a torn tail, which
//! recovery cuts off; a bad record with valid data after it, or in an older segment, is
//! corruption, and recovery refuses it with the segment and offset rather than guess.
//!
//! A persist's snapshot is written before its records, the atomic way: a temporary file,
//! fsync, rename, fsync of the directory. Once it is durable, the oldest segments whose log
//! ends at or before the snapshot are deleted, and all but the newest [`SNAPSHOTS_KEPT`]
//! snapshots. Each new segment starts with the current hard state, so deleting older segments
//! never loses the term and vote.
//!
//! ```text
//! segment  = record*      wal-<seq:016>.log, a new one past SEGMENT_BYTES_MAX
//! snapshot                snapshot-<index:020>.snap (the core's journal::encode_snapshot)
//! ```
//!
//! Group commit: [`GroupCommit::run`] takes every persist queued while the previous fdatasync
//! ran, writes them all, and covers them with one fdatasync, then acknowledges the newest. Under
//! load, one fsync serves many proposals; idle, a single write is synced at once.
//!
//! The log reaches its files through [`LogDir`]: a real directory in the agent, an in-memory one
//! that tears unsynced writes at each crash in the simulator.
//!
//! A full disk is waited out: [`Wal::append`] cuts off whatever part of a refused write went
//! in, so the same persist is appended again, whole, once space returns ([`retryable`]). Every
//! other failure stops the writer: after a failed fsync the kernel may have dropped the very
//! pages it was to make durable, and carrying on could acknowledge what no disk holds.

mod dir;

use std::io;
use std::path::PathBuf;

pub use self::dir::{FsDir, LogDir};

use bytes::BytesMut;
use muster_core::raft::{journal, HardState, Index, Persist, PersistId, Restored, Snapshot};
use tokio::sync::mpsc;

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// Snapshots kept on disk (Consul keeps 2): the newest, and one to fall back on if the newest
/// is found damaged (usable only while the log still reaches back to it).
pub const SNAPSHOTS_KEPT: usize = 2;

const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// How often the log writer tries again while the disk is full.
pub const DISK_FULL_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a failed write may be tried again once space returns (the disk or the quota is full:
/// [`Wal::append`] left nothing of it behind), or must stop the server (anything else).
pub fn retryable(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system failed.
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// Every snapshot file is damaged.
    #[error("no readable snapshot in {}: {why}; refusing to start rather than lose acknowledged writes", dir.display())]
    Snapshot {
        /// The log's directory.
        dir: PathBuf,
        /// What is wrong with the newest.
        why: String,
    },
    /// A record is damaged where a crash cannot have left it.
    #[error("write-ahead log is corrupt in {} at byte {offset}: {why}; refusing to start rather than lose acknowledged writes", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        why: muster_core::raft::journal::Corruption,
    },
}

/// An open log, positioned to append.
#[derive(Debug)]
pub struct Wal<D: LogDir = FsDir> {
    dir: D,
    segment_seq: u64,
    segment_bytes: u64,
    segment_bytes_max: u64,
    /// Closed segments, oldest first, with where the log ended after each.
    sealed: Vec<(u64, Index)>,
    /// Where the log ends after everything appended.
    log_end: Index,
    /// The hard state last appended, repeated at the head of each new segment.
    hard: HardState,
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
        Wal::open_in(FsDir::open(dir)?, segment_bytes_max)
    }
}

impl<D: LogDir> Wal<D> {
    /// Opens the log in `dir`, segments of `segment_bytes_max` bytes, and recovers what it holds.
    pub fn open_in(mut dir: D, segment_bytes_max: u64) -> Result<(Wal<D>, Restored), WalError> {
        let segments = list_segments(&dir)?;
        let mut restored = Restored { snapshot: read_snapshot(&mut dir)?, ..Restored::default() };
        let mut last = None;
        let mut sealed = Vec::new();
        for (i, &(seq, ref name)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let (length, valid_bytes) = replay_segment(&dir, name, is_last, &mut restored)?;
            let log_end = restored.entries.last().map_or(0, |e| e.index);
            if !is_last {
                sealed.push((seq, log_end));
            }
            last = Some((seq, name.clone(), length, valid_bytes));
        }
        let (segment_seq, segment_bytes) = match last {
            Some((seq, name, length, valid_bytes)) => {
                if length > valid_bytes {
                    tracing::warn!(segment = %dir.path(&name).display(), valid_bytes, "agent.server.raft.wal: cutting off a torn tail");
                    dir.truncate(&name, valid_bytes)?;
                }
                (seq, valid_bytes)
            }
            None => {
                create_segment(&mut dir, 1)?;
                (1, 0)
            }
        };
        let wal = Wal {
            dir,
            segment_seq,
            segment_bytes,
            segment_bytes_max,
            sealed,
            log_end: restored.entries.last().map_or(0, |e| e.index),
            hard: restored.hard_state,
            buf: BytesMut::new(),
            syncs: 0,
        };
        Ok((wal, restored))
    }

    /// The directory, given back (the simulator keeps it across its server's crash).
    pub fn into_dir(self) -> D {
        self.dir
    }

    /// Stores the snapshot of `persist`, if any (durably, before anything else), then appends
    /// its records (written, not yet synced). If the records cannot be written, whatever part
    /// of them went in is cut off again, so that the same persist may be appended later.
    pub fn append(&mut self, persist: &Persist) -> io::Result<()> {
        if let Some(snapshot) = &persist.snapshot {
            self.write_snapshot(snapshot)?;
        }
        self.buf.clear();
        journal::encode_persist(persist, &mut self.buf);
        if self.segment_bytes > 0 && self.segment_bytes + self.buf.len() as u64 > self.segment_bytes_max {
            self.rotate()?;
        }
        let name = segment_name(self.segment_seq);
        if let Err(error) = self.dir.append(&name, &self.buf) {
            self.dir.truncate(&name, self.segment_bytes)?;
            return Err(error);
        }
        self.segment_bytes += self.buf.len() as u64;
        if let Some(hard) = persist.hard_state {
            self.hard = hard;
        }
        if let Some(from) = persist.truncate_from {
            self.log_end = self.log_end.min(from - 1);
        }
        if let Some(last) = persist.entries.last() {
            self.log_end = last.index;
        }
        Ok(())
    }

    /// How many segment files the log spans now.
    pub fn segments(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Writes `snapshot` atomically, then deletes what it makes unnecessary: the oldest sealed
    /// segments whose log ends at or before it, and the snapshots beyond [`SNAPSHOTS_KEPT`].
    fn write_snapshot(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        let index = snapshot.meta.index;
        // A temporary file left by a crash mid-write goes first.
        if self.dir.list()?.iter().any(|name| name == SNAPSHOT_TMP) {
            self.dir.remove(SNAPSHOT_TMP)?;
        }
        self.dir.create(SNAPSHOT_TMP)?;
        self.dir.append(SNAPSHOT_TMP, &journal::encode_snapshot(snapshot))?;
        self.dir.sync(SNAPSHOT_TMP)?;
        self.dir.rename(SNAPSHOT_TMP, &snapshot_name(index))?;
        self.dir.sync_dir()?;
        // From here on, the snapshot stands in for everything it covers.
        let deletable = self.sealed.iter().take_while(|&&(_, log_end)| log_end <= index).count();
        for (seq, _) in self.sealed.drain(..deletable) {
            self.dir.remove(&segment_name(seq))?;
        }
        for (_, name) in list_snapshots(&self.dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
            self.dir.remove(&name)?;
        }
        Ok(())
    }

    /// Makes everything appended durable (fdatasync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.dir.sync(&segment_name(self.segment_seq))?;
        self.syncs += 1;
        Ok(())
    }

    /// How many fdatasyncs this log has issued since it was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Closes the current segment (synced) and starts the next; the directory entry of the new
    /// segment is made durable before anything is written to it.
    /// A new segment that cannot be started (the disk is full) is removed again, and the
    /// current one stays open.
    fn rotate(&mut self) -> io::Result<()> {
        self.dir.sync(&segment_name(self.segment_seq))?;
        let seq = self.segment_seq + 1;
        let name = segment_name(seq);
        create_segment(&mut self.dir, seq)?;
        let mut head = BytesMut::new();
        journal::encode_hard_state(self.hard, &mut head);
        // Durable before anything else: a snapshot in this same batch may delete the segment
        // just sealed, the only other copy of the hard state.
        if let Err(error) = self.dir.append(&name, &head).and_then(|()| self.dir.sync(&name)) {
            self.dir.remove(&name)?;
            return Err(error);
        }
        self.sealed.push((self.segment_seq, self.log_end));
        self.segment_seq = seq;
        self.segment_bytes = head.len() as u64;
        Ok(())
    }
}

/// What the log writer reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Everything up to `newest` is durable: `covered` persists rode one fdatasync.
    Durable {
        /// The newest persist made durable.
        newest: PersistId,
        /// How many persists the sync covered.
        covered: usize,
    },
    /// The disk is full (`true`: writes wait, tried again every [`DISK_FULL_RETRY_INTERVAL`])
    /// or has room again (`false`).
    Full(bool),
}

/// Runs group commit over a log: persists arrive on a channel; each round writes every persist
/// queued so far, syncs once, and reports the newest id made durable with the number of
/// persists it covered. While the disk is full it waits, and says so. Returns when the channel
/// closes, or on the first other I/O error, which the caller must treat as fatal: what was
/// acknowledged stays acknowledged, but nothing more may be.
#[derive(Debug)]
pub struct GroupCommit;

/// The server's ends of a running log writer: persists go in; what became durable, or the
/// error that stopped the writer, comes out.
pub type WriterEnds = (mpsc::UnboundedSender<Persist>, mpsc::UnboundedReceiver<io::Result<Written>>);

impl GroupCommit {
    /// Starts the writer of `wal`, named `name`: on a thread of its own in the agent (it blocks
    /// on the disk, and must not block the runtime's workers), as a task in the simulator
    /// (madsim runs no threads; its disk is memory, and says how long each sync takes).
    pub fn spawn<D: LogDir + Send + 'static>(wal: Wal<D>, name: String) -> io::Result<WriterEnds> {
        let (persist_tx, mut persist_rx) = mpsc::unbounded_channel();
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let writer = async move {
            let mut wal = wal;
            let report = |written| {
                let _ = written_tx.send(Ok(written));
            };
            if let Err(error) = GroupCommit::run(&mut wal, &mut persist_rx, report).await {
                let _ = written_tx.send(Err(error));
            }
        };
        #[cfg(not(madsim))]
        {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
            std::thread::Builder::new().name(name).spawn(move || runtime.block_on(writer))?;
        }
        #[cfg(madsim)]
        {
            let _ = name;
            tokio::spawn(writer);
        }
        Ok((persist_tx, written_rx))
    }

    /// The loop, over `persists` until it closes.
    pub async fn run<D: LogDir>(
        wal: &mut Wal<D>,
        persists: &mut mpsc::UnboundedReceiver<Persist>,
        mut report: impl FnMut(Written),
    ) -> io::Result<()> {
        while let Some(first) = persists.recv().await {
            let mut newest = first.id;
            GroupCommit::append(wal, &first, &mut report).await?;
            let mut covered = 1;
            while let Ok(next) = persists.try_recv() {
                newest = next.id;
                GroupCommit::append(wal, &next, &mut report).await?;
                covered += 1;
            }
            let delay = wal.dir.sync_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            wal.sync()?;
            report(Written::Durable { newest, covered });
        }
        Ok(())
    }

    /// Appends `persist`, waiting out a full disk.
    async fn append<D: LogDir>(
        wal: &mut Wal<D>,
        persist: &Persist,
        report: &mut impl FnMut(Written),
    ) -> io::Result<()> {
        let mut full = false;
        loop {
            match wal.append(persist) {
                Ok(()) => break,
                Err(error) if retryable(&error) => {
                    if !full {
                        tracing::error!(%error, "agent.server.raft.wal: the disk is full; writes wait until space is freed");
                        full = true;
                        report(Written::Full(true));
                    }
                    tokio::time::sleep(DISK_FULL_RETRY_INTERVAL).await;
                }
                Err(error) => return Err(error),
            }
        }
        if full {
            tracing::info!("agent.server.raft.wal: space freed; writing again");
            report(Written::Full(false));
        }
        Ok(())
    }
}

/// Replays segment `name` into `restored`; returns its length and how many bytes of it are valid.
fn replay_segment<D: LogDir>(
    dir: &D,
    name: &str,
    is_last: bool,
    restored: &mut Restored,
) -> Result<(u64, u64), WalError> {
    let bytes = dir.read(name)?;
    let valid = journal::replay(&bytes, is_last, restored).map_err(|(offset, why)| WalError::Corrupt {
        segment: dir.path(name),
        offset: offset as u64,
        why,
    })?;
    Ok((bytes.len() as u64, valid))
}

/// The newest snapshot that reads back whole; a damaged newer one is skipped with a warning
/// (its fallback is only usable while the log reaches back to it, which `Raft::new` checks).
fn read_snapshot<D: LogDir>(dir: &mut D) -> Result<Option<Snapshot>, WalError> {
    if dir.list()?.iter().any(|name| name == SNAPSHOT_TMP) {
        dir.remove(SNAPSHOT_TMP)?;
    }
    let mut first_damage = None;
    for (index, name) in list_snapshots(dir)? {
        let path = dir.path(&name);
        match journal::decode_snapshot(&dir.read(&name)?) {
            Ok(snapshot) if snapshot.meta.index == index => return Ok(Some(snapshot)),
            Ok(_) => first_damage.get_or_insert(format!("{} is misnamed", path.display())),
            Err(why) => {
                tracing::warn!(snapshot = %path.display(), %why, "agent.server.raft.wal: skipping a damaged snapshot");
                first_damage.get_or_insert(format!("{}: {why}", path.display()))
            }
        };
    }
    match first_damage {
        Some(why) => Err(WalError::Snapshot { dir: dir.path(""), why }),
        None => Ok(None),
    }
}

/// The snapshot files, newest first.
fn list_snapshots<D: LogDir>(dir: &D) -> io::Result<Vec<(Index, String)>> {
    let mut snapshots = numbered(dir, "snapshot-", ".snap")?;
    snapshots.reverse();
    Ok(snapshots)
}

/// The files named `<prefix><number><suffix>`, by number, lowest first.
fn numbered<D: LogDir>(dir: &D, prefix: &str, suffix: &str) -> io::Result<Vec<(u64, String)>> {
    let mut files: Vec<(u64, String)> = dir
        .list()?
        .into_iter()
        .filter_map(|name| {
            let number = name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse::<u64>().ok()?;
            Some((number, name))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn snapshot_name(index: Index) -> String {
    format!("snapshot-{index:020}.snap")
}

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016}.log")
}

/// The segment files, oldest first.
fn list_segments<D: LogDir>(dir: &D) -> io::Result<Vec<(u64, String)>> {
    numbered(dir, "wal-", ".log")
}

fn create_segment<D: LogDir>(dir: &mut D, seq: u64) -> io::Result<()> {
    dir.create(&segment_name(seq))?;
    // The new name must survive a crash before any record in it is acknowledged.
    dir.sync_dir()
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};

    use bytes::Bytes;
    use muster_core::raft::{Entry, Membership, Payload, SnapshotMeta};

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
        Persist { id: PersistId::from_raw(id), hard_state: hard, snapshot: None, truncate_from, entries }
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
        assert!(list_segments(&FsDir::open(&dir).unwrap()).unwrap().len() > 2);
        let (_, restored) = Wal::open_with_segment_size(&dir, 100).unwrap();
        assert_eq!(restored.entries.len(), 20);
        assert!(restored.entries.iter().enumerate().all(|(i, e)| e.index == i as u64 + 1));
    }

    fn snapshot(index: Index, text: &'static str) -> Snapshot {
        let membership = Membership { voters: [1].into(), learners: [].into() };
        Snapshot {
            meta: SnapshotMeta { index, term: 1, membership },
            data: Bytes::from_static(text.as_bytes()),
        }
    }

    #[test]
    fn a_snapshot_deletes_the_segments_it_covers_and_the_hard_state_survives() {
        let dir = temp_dir("snapshot");
        let (mut wal, _) = Wal::open_with_segment_size(&dir, 100).unwrap();
        let hard = HardState { term: 1, vote: Some(1) };
        wal.append(&persist(1, Some(hard), None, vec![entry(1, 1, "0123456789")])).unwrap();
        for i in 2..=40 {
            wal.append(&persist(i, None, None, vec![entry(i, 1, "0123456789")])).unwrap();
        }
        let before = list_segments(&FsDir::open(&dir).unwrap()).unwrap().len();
        for (index, text) in [(10, "first"), (20, "second"), (30, "third")] {
            let mut with_snapshot = persist(40 + index, None, None, vec![]);
            with_snapshot.snapshot = Some(snapshot(index, text));
            wal.append(&with_snapshot).unwrap();
        }
        wal.sync().unwrap();
        let after = list_segments(&FsDir::open(&dir).unwrap()).unwrap().len();
        assert!(after < before - 10, "segments up to the snapshot went: {before} -> {after}");
        assert_eq!(list_snapshots(&FsDir::open(&dir).unwrap()).unwrap().len(), SNAPSHOTS_KEPT);
        drop(wal);
        let (_, restored) = Wal::open_with_segment_size(&dir, 100).unwrap();
        assert_eq!(restored.hard_state, hard, "carried into every new segment");
        assert_eq!(restored.snapshot, Some(snapshot(30, "third")));
        let first = restored.entries.first().unwrap().index;
        assert!(first > 1 && first <= 31, "the log reaches back to the snapshot: {first}");
        assert_eq!(restored.entries.last().unwrap().index, 40);

        // A damaged newest snapshot falls back to the one before; with both damaged, no start.
        let newest = dir.join(snapshot_name(30));
        let mut bytes = fs::read(&newest).unwrap();
        bytes[10] ^= 0xFF;
        fs::write(&newest, &bytes).unwrap();
        let (_, restored) = Wal::open_with_segment_size(&dir, 100).unwrap();
        assert_eq!(restored.snapshot, Some(snapshot(20, "second")));
        fs::write(dir.join(snapshot_name(20)), b"junk").unwrap();
        let error = Wal::open_with_segment_size(&dir, 100).unwrap_err();
        assert!(matches!(error, WalError::Snapshot { .. }), "{error}");
    }

    #[test]
    fn group_commit_covers_everything_queued_with_one_sync() {
        let dir = temp_dir("group");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 1..=50 {
            tx.send(persist(i, None, None, vec![entry(i, 1, "x")])).unwrap();
        }
        drop(tx);
        let mut acks = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime
            .block_on(GroupCommit::run(&mut wal, &mut rx, |written| {
                if let Written::Durable { newest, covered } = written {
                    acks.push((newest.get(), covered));
                }
            }))
            .unwrap();
        assert_eq!(acks, [(50, 50)], "everything queued rode one fdatasync");
        assert_eq!(wal.syncs(), 1);
    }
}
