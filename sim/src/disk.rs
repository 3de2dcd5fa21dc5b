//! The simulator's disk under the agent's write-ahead log: a directory of files in memory that
//! keeps what was synced and, when its server crashes, a random prefix of what was not (a write
//! torn mid-record, or lost whole), so that the log's own recovery (`muster::wal`) is what
//! brings a crashed server back.
//!
//! It also fails as disks do: it fills up (an append that does not fit writes what fits, then
//! fails with `StorageFull`) and an fsync can fail (`EIO`).
//!
//! Names (create, rename, remove) are durable at once: the model tears data, not directory
//! entries, so a log that forgot to sync its directory would go unnoticed here.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use muster::wal::LogDir;
use muster_core::Rng;

/// A directory shared between a server's open log and the simulator, which tears it at each
/// crash. Cloning shares it; it is `Send`, for the madsim tier's servers, whose log writer is
/// a task.
#[derive(Debug, Clone, Default)]
pub struct SimDir(Arc<Mutex<Files>>);

#[derive(Debug, Default)]
struct Files {
    files: BTreeMap<String, SimFile>,
    /// The most bytes the files may hold, when the disk is full.
    capacity: Option<u64>,
    /// The next fsync fails.
    fail_next_sync: bool,
    /// The next append fails with an I/O error, half written.
    fail_next_append: bool,
    /// How long each sync is made to take.
    sync_delay: Duration,
}

impl Files {
    fn bytes(&self) -> u64 {
        self.files.values().map(|file| file.data.len() as u64).sum()
    }
}

#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    /// The bytes of `data` on the disk; the rest is in the page cache.
    durable: usize,
}

impl SimDir {
    fn files(&self) -> MutexGuard<'_, Files> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Each sync is made to take `delay` of simulated time (the log writer waits it out before
    /// syncing, so a crash can fall between a write and its sync).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.files().sync_delay = delay;
    }

    /// The power goes: each file keeps what was synced and a random prefix of the rest.
    /// Returns how many bytes were lost.
    pub fn crash(&self, rng: &mut Rng) -> u64 {
        let mut lost = 0;
        for file in self.files().files.values_mut() {
            let unsynced = file.data.len() - file.durable;
            let kept = rng.below(unsynced as u64 + 1) as usize;
            lost += (unsynced - kept) as u64;
            file.data.truncate(file.durable + kept);
            file.durable = file.data.len();
        }
        lost
    }

    /// The disk fills up: `room` more bytes fit until [`SimDir::free`] (an append that needs
    /// more writes what fits).
    pub fn fill(&self, room: u64) {
        let mut files = self.files();
        files.capacity = Some(files.bytes() + room);
    }

    /// Space returns.
    pub fn free(&self) {
        self.files().capacity = None;
    }

    /// Space returns and no fsync or append is set to fail.
    pub fn clear_faults(&self) {
        let mut files = self.files();
        files.capacity = None;
        files.fail_next_sync = false;
        files.fail_next_append = false;
    }

    /// The next append writes half its bytes and fails with an I/O error (EIO: a bad sector, a
    /// detached volume).
    pub fn fail_next_append(&self) {
        self.files().fail_next_append = true;
    }

    /// The next fsync fails with an I/O error.
    pub fn fail_next_sync(&self) {
        self.files().fail_next_sync = true;
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl LogDir for SimDir {
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from("sim").join(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files().files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.files().files.get(name).map(|file| file.data.clone()).ok_or_else(|| not_found(name))
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let mut files = self.files();
        if files.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        files.files.insert(name.to_owned(), SimFile::default());
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut files = self.files();
        if std::mem::take(&mut files.fail_next_append) {
            let file = files.files.get_mut(name).ok_or_else(|| not_found(name))?;
            file.data.extend_from_slice(&bytes[..bytes.len() / 2]);
            return Err(io::Error::other("input/output error"));
        }
        let room = files.capacity.map_or(u64::MAX, |capacity| capacity.saturating_sub(files.bytes()));
        let fits = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        files.files.get_mut(name).ok_or_else(|| not_found(name))?.data.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        let mut files = self.files();
        if std::mem::take(&mut files.fail_next_sync) {
            return Err(io::Error::other("input/output error"));
        }
        let file = files.files.get_mut(name).ok_or_else(|| not_found(name))?;
        file.durable = file.data.len();
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let mut files = self.files();
        let file = files.files.get_mut(name).ok_or_else(|| not_found(name))?;
        file.data.truncate(len as usize);
        file.durable = file.data.len();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files();
        let file = files.files.remove(from).ok_or_else(|| not_found(from))?;
        files.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files().files.remove(name).map(drop).ok_or_else(|| not_found(name))
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn sync_delay(&mut self) -> Duration {
        self.files().sync_delay
    }
}
