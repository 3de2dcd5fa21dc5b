//! The replicated state as a server's HTTP readers see it: the [`Fsm`] behind a lock, applied
//! to by the Raft server task, with the watch registry that wakes blocked readers.
//!
//! A reader takes an O(1) clone of the state under the lock and reads it outside, so readers
//! run side by side and never hold up the entries being applied. A blocking query whose answer
//! is not newer than the index it waits past registers what its answer depends on under the
//! lock, and only if no entry was applied since its clone was taken (else it reads again): no
//! change is missed. Each applied entry wakes exactly the readers its touched set names
//! ([`Watches::wake`]); a woken reader reads again, and answers or waits again. When the whole
//! state is replaced (a Raft snapshot installed, or a snapshot restored through the log) every
//! reader wakes and learns that it was replaced ([`Wake::Replaced`]): its answer may have
//! changed while its index went back, so it answers at once, as Consul answers every blocked
//! query when a restore abandons its state store.
//!
//! The leader's duties (core's [`LeaderDuties`]: session TTLs, tombstone expiry) live beside
//! the state and follow every entry as it is applied, under the same lock, so what they time is
//! what the state holds; the agent's duty task (`tasks/leader.rs`) takes office, and proposes
//! what falls due.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use muster_core::fsm::{ApplyError, Fsm, LeaderDuties, Response, Touched, WatchId, WatchTarget, Watches};
use tokio::sync::Notify;

use crate::raft_server::StateMachine;
use crate::timers::Clocked;

/// The state machine, its blocked readers and the leader's duties.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
    /// Locked only inside `inner`'s lock, or alone: never the other way round.
    duties: Clocked<LeaderDuties>,
}

#[derive(Debug, Default)]
struct Inner {
    fsm: Fsm,
    watches: Watches,
    /// Each registered target's reader.
    waiting: BTreeMap<WatchId, Arc<Notify>>,
    /// How many times the whole state was replaced.
    replaced: u64,
    /// A bug planted in the state machine, planted again in each state that replaces it.
    #[cfg(feature = "invariants")]
    planted: Option<muster_core::planted::PlantedBug>,
}

impl Store {
    /// An empty state.
    pub fn new() -> Arc<Store> {
        Arc::new(Store::default())
    }

    /// An empty state whose leader keeps tombstones `ttl` (tests shorten Consul's 15 minutes).
    pub fn with_tombstone_ttl(ttl: std::time::Duration) -> Arc<Store> {
        Arc::new(Store { duties: Clocked::new(LeaderDuties::new(ttl)), ..Store::default() })
    }

    /// The leader's duties, on this process's clock.
    pub fn duties(&self) -> &Clocked<LeaderDuties> {
        &self.duties
    }

    /// This server took the leadership: its duties start from the state as it stands.
    pub fn take_office(&self) {
        let inner = self.lock();
        self.duties.update(|duties, now| duties.take_office(&inner.fsm, now));
    }

    /// This server lost the leadership: its duties stop.
    pub fn leave_office(&self) {
        self.duties.update(|duties, _| duties.leave_office());
    }

    /// A client renews session `id` here: its TTL timer restarts, if one runs.
    pub fn renew(&self, id: &str) {
        let inner = self.lock();
        self.duties.update(|duties, now| duties.renew(&inner.fsm, id, now));
    }

    /// Breaks a rule of the state machine and the leader's duties on purpose, to prove the
    /// simulator's checkers catch it ([`muster_core::planted`]).
    #[cfg(feature = "invariants")]
    #[doc(hidden)]
    pub fn plant(&self, bug: Option<muster_core::planted::PlantedBug>) {
        let mut inner = self.lock();
        inner.planted = bug;
        inner.fsm.plant(bug);
        self.duties.update(|duties, _| duties.plant(bug));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while applying would have stopped the server; the state is still whole
        // (every apply either completes or asserts before changing anything it checks).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the state. The lock is held only to take a clone (O(1): persistent maps), so
    /// readers run side by side and a long read (a health query over 50,000 nodes, thousands
    /// of watchers woken at once) never holds up an entry being applied.
    pub fn read<R>(&self, read: impl FnOnce(&Fsm) -> R) -> R {
        let fsm = self.lock().fsm.clone();
        read(&fsm)
    }

    /// Reads the state and, if `ready` says the answer is not yet newer than what the reader
    /// waits past, registers `targets`. `Err(waiter)`: await it, then read again. The read runs
    /// on a clone, outside the lock; the registration is made under the lock only if no entry
    /// was applied since the clone was taken (else the state is read again), so no change is
    /// missed. The answer not given is dropped here: a fleet of watchers would each keep a copy
    /// of theirs (a whole service list, say) for as long as they wait.
    pub fn read_or_watch<R>(
        self: &Arc<Self>,
        read: impl Fn(&Fsm) -> (R, bool),
        targets: impl FnOnce() -> Vec<WatchTarget>,
    ) -> Result<R, Waiter> {
        let mut inner = loop {
            let (fsm, replaced) = {
                let inner = self.lock();
                (inner.fsm.clone(), inner.replaced)
            };
            let (answer, ready) = read(&fsm);
            if ready {
                return Ok(answer);
            }
            let read_at = (fsm.applied(), replaced);
            drop((answer, fsm));
            let inner = self.lock();
            if (inner.fsm.applied(), inner.replaced) == read_at {
                break inner;
            }
        };
        let notify = Arc::new(Notify::new());
        let mut ids = Vec::new();
        for target in targets() {
            let id = inner.watches.register(target);
            inner.waiting.insert(id, notify.clone());
            ids.push(id);
        }
        let replaced = inner.replaced;
        Err(Waiter { store: self.clone(), ids, notify, replaced })
    }

    /// Applies a committed entry and wakes the readers it concerns (all of them when it
    /// replaced the state: a restore).
    pub fn apply(&self, index: u64, entry: &[u8]) -> Result<Response, ApplyError> {
        let mut inner = self.lock();
        let applied = inner.fsm.apply(index, entry)?;
        self.duties.update(|duties, now| duties.follow(&inner.fsm, &applied.touched, index, now));
        if applied.touched.all {
            inner.replaced += 1;
        }
        if !applied.touched.is_empty() {
            for id in inner.watches.wake(&applied.touched) {
                if let Some(notify) = inner.waiting.remove(&id) {
                    notify.notify_one();
                }
            }
        }
        Ok(applied.response)
    }

    /// The whole state, encoded.
    pub fn snapshot(&self) -> Bytes {
        self.lock().fsm.snapshot()
    }

    /// Replaces the whole state; every blocked reader is woken to read it.
    pub fn restore(&self, snapshot: &[u8]) -> Result<(), muster_core::fsm::SnapshotError> {
        let fsm = Fsm::restore(snapshot)?;
        let mut inner = self.lock();
        inner.fsm = fsm;
        #[cfg(feature = "invariants")]
        {
            let bug = inner.planted;
            inner.fsm.plant(bug);
        }
        inner.replaced += 1;
        let (state, applied) = (&inner.fsm, inner.fsm.applied());
        self.duties.update(|duties, now| duties.follow(state, &Touched::everything(), applied, now));
        for notify in std::mem::take(&mut inner.waiting).into_values() {
            notify.notify_one();
        }
        inner.watches = Watches::new();
        Ok(())
    }

    /// Readers registered (targets, not readers: one reader may wait on several).
    pub fn watching(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// A blocked reader's registration: await [`Waiter::changed`]; dropping it unregisters.
#[derive(Debug)]
pub struct Waiter {
    store: Arc<Store>,
    ids: Vec<WatchId>,
    notify: Arc<Notify>,
    /// The store's replacement count when the reader registered.
    replaced: u64,
}

/// Why a blocked reader woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An entry touched what it reads: read again, and answer or wait again.
    Touched,
    /// The whole state was replaced: answer from it whatever its index (which may have gone
    /// back past the one the reader waits on).
    Replaced,
}

impl Waiter {
    /// Resolves once an entry touched one of the targets, or the state was replaced.
    pub async fn changed(&self) -> Wake {
        self.notify.notified().await;
        if self.store.lock().replaced == self.replaced {
            Wake::Touched
        } else {
            Wake::Replaced
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut inner = self.store.lock();
        for id in &self.ids {
            if inner.waiting.remove(id).is_some() {
                inner.watches.cancel(*id);
            }
        }
    }
}

/// Why [`bootstrap_single`] could not start its cluster.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The server port could not be bound.
    #[error("Error binding the server port {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it could not.
        source: std::io::Error,
    },
    /// Raft did not start over its log.
    #[error("Error starting Raft in {}: {source}", dir.display())]
    Raft {
        /// The log's directory.
        dir: std::path::PathBuf,
        /// Why it did not.
        source: crate::raft_server::StartError,
    },
}

/// Starts a one-server cluster (-dev, -bootstrap): Raft as server `id`, the only voter, over
/// its log in `dir`, listening for peers on `bind`, applying to a new store whose leader keeps
/// tombstones `tombstone_ttl`.
pub async fn bootstrap_single(
    id: muster_core::raft::ServerId,
    mut config: muster_core::raft::Config,
    bind: std::net::SocketAddr,
    dir: &std::path::Path,
    tombstone_ttl: std::time::Duration,
) -> Result<
    (crate::raft_server::RaftHandle<<StoreMachine as StateMachine>::Output>, Arc<Store>),
    BootstrapError,
> {
    let (transport, inbound) = crate::raft_net::RaftTransport::bind(id, bind)
        .await
        .map_err(|source| BootstrapError::Bind { addr: bind, source })?;
    config.id = id;
    config.voters = [id].into_iter().collect();
    let store = Store::with_tombstone_ttl(tombstone_ttl);
    let handle = crate::raft_server::start(config, dir, transport, inbound, StoreMachine(store.clone()))
        .map_err(|source| BootstrapError::Raft { dir: dir.to_path_buf(), source })?;
    Ok((handle, store))
}

/// The Raft server's view of the store.
#[derive(Debug, Clone)]
pub struct StoreMachine(pub Arc<Store>);

impl StateMachine for StoreMachine {
    type Output = Result<Response, ApplyError>;

    fn apply(&mut self, index: u64, command: &Bytes) -> Self::Output {
        let result = self.0.apply(index, command);
        if let Err(error) = &result {
            // Skipping the entry would make this server's state diverge from the others'.
            tracing::error!(%error, "state machine: a committed entry cannot be applied");
        }
        result
    }

    fn snapshot(&self) -> Bytes {
        self.0.snapshot()
    }

    fn restore(&mut self, snapshot: &muster_core::raft::Snapshot) {
        if let Err(error) = self.0.restore(&snapshot.data) {
            tracing::error!(%error, "state machine: a snapshot from the leader cannot be restored");
        }
    }
}

#[cfg(test)]
mod tests {
    use muster_core::fsm::{Command, KvSet};

    use super::*;

    /// Writes `key` at `index`, with a value of its own (writing the same value again touches
    /// nothing).
    fn put(store: &Store, index: u64, key: &str) {
        let set = Command::KvSet(KvSet { key: key.into(), value: Bytes::from(index.to_string()), flags: 0 });
        store.apply(index, &set.encode(0)).expect("applies");
    }

    /// An entry applied while a blocking reader reads its clone, outside the lock, is seen:
    /// the reader reads again rather than registering to wait past a change it never saw.
    #[test]
    fn a_write_between_the_read_and_the_registration_is_not_missed() {
        let store = Store::new();
        put(&store, 1, "k");
        let reads = std::cell::Cell::new(0);
        let attempt = store.read_or_watch(
            |fsm| {
                reads.set(reads.get() + 1);
                if reads.get() == 1 {
                    put(&store, 2, "k"); // lands between this read and the registration
                }
                (fsm.applied(), fsm.applied() > 1)
            },
            || vec![WatchTarget::Key("k".into())],
        );
        assert_eq!(attempt.ok(), Some(2), "the second read sees the entry and answers");
        assert_eq!(reads.get(), 2);
        assert_eq!(store.watching(), 0, "nothing is left registered");
    }

    /// With no entry in between, the reader registers and is woken by the next one.
    #[tokio::test]
    async fn a_reader_with_nothing_new_waits_and_is_woken() {
        let store = Store::new();
        put(&store, 1, "k");
        let Err(waiter) =
            store.read_or_watch(|fsm| ((), fsm.applied() > 1), || vec![WatchTarget::Key("k".into())])
        else {
            panic!("nothing newer than index 1 yet");
        };
        assert_eq!(store.watching(), 1);
        put(&store, 2, "k");
        assert_eq!(waiter.changed().await, Wake::Touched);
    }
}
