//! A Raft server as one state machine: [`Raft`], the application's [`StateMachine`], and the
//! callers waiting on both.
//!
//! [`Raft`] decides what is committed; a [`Server`] also applies it, answers the callers who
//! proposed it, confirms reads, takes snapshots when Raft asks, and remembers when it last heard
//! from each peer. Each caller hands in a waiter `W` of its own choosing (a oneshot sender in the
//! tokio shell, an operation number in the simulator) and gets it back in exactly one [`Reply`]:
//! refused at once, applied, read, lost to another leader's entry, or of unknown outcome. The
//! drivers only carry what comes out:
//!
//! ```text
//!        propose / read / change_membership / handle_message / handle_timeout
//!   driver ───────────────────────────────────────────────────────────────────▶ Server
//!     ▲  ◀── poll_persist ── write + fsync ── on_persisted ──▶                    │ Raft
//!     │                                                                          │ apply
//!     └─────── poll_transmit / poll_reply / poll_role / poll_timeout ◀───────────┘ State
//! ```
//!
//! Both the `muster` binary (`io/src/raft_server.rs`) and the simulator drive this type, so what
//! the simulator breaks is what the agent runs.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::planted::PlantedBug;
use crate::raft::{
    Apply, Config, ConfigError, Entry, Event, Index, Membership, MembershipChange, Message, Payload, Persist,
    PersistId, ProposeError, Raft, Restored, Role, ServerId, Snapshot, Term, Transmit,
};
use crate::Instant;

/// The application's replicated state.
pub trait StateMachine {
    /// What applying a command answers its proposer.
    type Output;

    /// Applies the committed command at `index`.
    fn apply(&mut self, index: Index, command: &Bytes) -> Self::Output;

    /// The whole state, encoded (taken when Raft asks, to compact the log).
    fn snapshot(&self) -> Bytes;

    /// Replaces the whole state with a snapshot's (its `data`, as [`StateMachine::snapshot`]
    /// encoded it, taken after the entry its `meta` names).
    fn restore(&mut self, snapshot: &Snapshot);

    /// Sees every entry as it is applied, Raft's own (no-ops, membership changes) as well as
    /// commands, before [`StateMachine::apply`] for a command. Nothing by default; the simulator
    /// checks what each replica applies through it.
    fn applying(&mut self, _entry: &Entry) {}
}

/// Why a request did not take effect, or may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Raft refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] ProposeError),
    /// Its entry was replaced by another leader's: it did not take effect.
    #[error("leadership changed before the write committed")]
    Lost,
    /// A snapshot from the leader covered its entry here: it may or may not have taken effect.
    #[error("outcome unknown: the entry was compacted into a snapshot")]
    Unknown,
    /// The server stopped.
    #[error("the Raft server stopped")]
    Stopped,
}

/// What a request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done<O> {
    /// The proposed command was committed and applied at `index`; the state machine answered
    /// `output`.
    Applied {
        /// Where it sits in the log.
        index: Index,
        /// The state machine's answer.
        output: O,
    },
    /// A consistent read may be served: entries through `index` are applied here.
    Read {
        /// The read index.
        index: Index,
    },
    /// The membership change was committed and applied.
    Changed,
}

/// A caller's answer: its waiter back, the outcome, and how long it waited.
#[derive(Debug)]
pub struct Reply<W, O> {
    /// What the caller handed in.
    pub waiter: W,
    /// What happened.
    pub outcome: Result<Done<O>, WriteError>,
    /// From the request to its answer, on the server's clock (zero when refused at once).
    pub waited: Duration,
}

/// A change of role, term or known leader, with the role before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// The role before.
    pub previous: Role,
    /// The role now.
    pub role: Role,
    /// The term now.
    pub term: Term,
    /// The leader, if known.
    pub leader: Option<ServerId>,
}

/// A leader's read lease ([`Raft::lease_until`]): whether it may serve a default-mode read from
/// its state as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// None: not the leader, or no majority confirmed it recently; a read must confirm the
    /// leadership first (ReadIndex).
    None,
    /// Held until this instant.
    Until(Instant),
    /// The only voter: held for as long as it leads.
    Always,
}

impl Lease {
    /// Whether the lease holds at `now`.
    pub fn holds(self, now: Instant) -> bool {
        match self {
            Lease::None => false,
            Lease::Until(until) => now < until,
            Lease::Always => true,
        }
    }
}

/// A request waiting for its entry or its read index.
#[derive(Debug)]
struct Waiting<W> {
    /// The term its entry was proposed in (a read's: unused).
    term: Term,
    waiter: W,
    asked: Instant,
}

/// Raft, the state machine it feeds, and the callers waiting on them.
#[derive(Debug)]
pub struct Server<S: StateMachine, W> {
    raft: Raft,
    state_machine: S,
    /// The last index applied to the state machine (an entry's, or a snapshot's).
    applied: Index,
    /// Proposals waiting for their entry, by index.
    writes: BTreeMap<Index, Waiting<W>>,
    /// Membership changes waiting for their entry, by index.
    changes: BTreeMap<Index, Waiting<W>>,
    /// Reads waiting for their index, by the tag given to Raft.
    reads: BTreeMap<u64, Waiting<W>>,
    next_read: u64,
    /// When each peer was last heard from.
    heard: BTreeMap<ServerId, Instant>,
    replies: VecDeque<Reply<W, S::Output>>,
    roles: VecDeque<RoleChange>,
    role: Role,
    /// The latest instant seen, for replies produced while draining.
    now: Instant,
}

impl<S: StateMachine, W> Server<S, W> {
    /// A server starting at `now` from what its log made durable before (or nothing), over
    /// `state_machine` as it stands before any of that is applied.
    pub fn new(
        config: Config,
        restored: Restored,
        state_machine: S,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let raft = Raft::new(config, restored, now)?;
        let mut server = Server {
            raft,
            state_machine,
            applied: 0,
            writes: BTreeMap::new(),
            changes: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 0,
            heard: BTreeMap::new(),
            replies: VecDeque::new(),
            roles: VecDeque::new(),
            role: Role::Follower,
            now,
        };
        // A restored snapshot and entries committed before are applied at once.
        server.step(now);
        Ok(server)
    }

    /// A message from server `from`.
    pub fn handle_message(&mut self, now: Instant, from: ServerId, message: Message) {
        self.heard.insert(from, now);
        self.raft.handle_message(now, from, message);
        self.step(now);
    }

    /// The deadline of [`Server::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.raft.handle_timeout(now);
        self.step(now);
    }

    /// The persist `id` is durable.
    pub fn on_persisted(&mut self, now: Instant, id: PersistId) {
        self.raft.on_persisted(now, id);
        self.step(now);
    }

    /// Proposes `command`; `waiter` comes back once it is applied here, or refused. Returns
    /// where its entry sits if Raft took it (a driver that loses the answer, to a crash or a
    /// timeout, can still find out from the log what became of it).
    pub fn propose(&mut self, now: Instant, command: Bytes, waiter: W) -> Option<(Index, Term)> {
        let taken = match self.raft.propose(now, command) {
            Ok((index, term)) => {
                self.writes.insert(index, Waiting { term, waiter, asked: now });
                Some((index, term))
            }
            Err(error) => {
                self.refuse(waiter, error);
                None
            }
        };
        self.step(now);
        taken
    }

    /// Asks for a consistent read (ReadIndex); `waiter` comes back with [`Done::Read`] once this
    /// server has confirmed it leads and has applied everything committed when asked.
    pub fn read(&mut self, now: Instant, waiter: W) {
        self.next_read += 1;
        match self.raft.read_index(now, self.next_read) {
            Ok(()) => {
                self.reads.insert(self.next_read, Waiting { term: self.raft.term(), waiter, asked: now });
            }
            Err(error) => self.refuse(waiter, error),
        }
        self.step(now);
    }

    /// Changes the membership by one server (this server must lead); `waiter` comes back once
    /// the change is applied here.
    pub fn change_membership(&mut self, now: Instant, change: MembershipChange, waiter: W) {
        match self.raft.change_membership(now, change) {
            Ok(index) => {
                self.changes.insert(index, Waiting { term: self.raft.term(), waiter, asked: now });
            }
            Err(error) => self.refuse(waiter, error),
        }
        self.step(now);
    }

    /// Starts handing leadership to `target` (this server must lead). Done once the transfer
    /// has started, not when it is complete: watch [`Server::poll_role`] for that.
    pub fn transfer_leadership(&mut self, now: Instant, target: ServerId) -> Result<(), WriteError> {
        let result = self.raft.transfer_leadership(now, target).map_err(WriteError::from);
        self.step(now);
        result
    }

    /// Something to make durable before [`Server::on_persisted`].
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.raft.poll_persist()
    }

    /// A message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.raft.poll_transmit()
    }

    /// A caller's answer.
    pub fn poll_reply(&mut self) -> Option<Reply<W, S::Output>> {
        self.replies.pop_front()
    }

    /// A change of role, term or leader.
    pub fn poll_role(&mut self) -> Option<RoleChange> {
        self.roles.pop_front()
    }

    /// When to call [`Server::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        self.raft.poll_timeout()
    }

    /// The Raft state, to read.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine, to read.
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// The last index applied to the state machine.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// When each peer was last heard from.
    pub fn heard(&self) -> &BTreeMap<ServerId, Instant> {
        &self.heard
    }

    /// The membership in effect here (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        self.raft.membership()
    }

    /// The read lease as it stands.
    pub fn lease(&self) -> Lease {
        match self.raft.lease_until() {
            None => Lease::None,
            Some(None) => Lease::Always,
            Some(Some(until)) => Lease::Until(until),
        }
    }

    /// Requests waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.writes.len() + self.changes.len() + self.reads.len()
    }

    fn refuse(&mut self, waiter: W, error: ProposeError) {
        self.replies.push_back(Reply { waiter, outcome: Err(error.into()), waited: Duration::ZERO });
    }

    fn answer(&mut self, waiting: Waiting<W>, outcome: Result<Done<S::Output>, WriteError>) {
        let waited = self.now.saturating_duration_since(waiting.asked);
        self.replies.push_back(Reply { waiter: waiting.waiter, outcome, waited });
    }

    /// Applies what Raft handed out and answers whom it concerns, until Raft has nothing more.
    fn step(&mut self, now: Instant) {
        self.now = self.now.max(now);
        loop {
            let mut moved = false;
            if self.raft.planted(PlantedBug::ApplyOutOfOrder) {
                let mut batch: Vec<Apply> = std::iter::from_fn(|| self.raft.poll_apply()).collect();
                if let [.., a, b] = &mut batch[..] {
                    std::mem::swap(a, b);
                }
                batch.into_iter().for_each(|apply| self.apply(apply));
            }
            while let Some(apply) = self.raft.poll_apply() {
                self.apply(apply);
            }
            while let Some(event) = self.raft.poll_event() {
                moved |= self.event(event);
            }
            if !moved {
                break;
            }
        }
        if crate::INVARIANT_CHECKS {
            self.check_invariants();
        }
    }

    /// Handles one of Raft's events; true if it gave Raft more to do.
    fn event(&mut self, event: Event) -> bool {
        match event {
            Event::ReadReady { ctx, index } => {
                if let Some(waiting) = self.reads.remove(&ctx) {
                    self.answer(waiting, Ok(Done::Read { index }));
                }
                false
            }
            Event::ReadFailed { ctx } => {
                if let Some(waiting) = self.reads.remove(&ctx) {
                    let leader_hint = self.raft.leader();
                    self.answer(waiting, Err(ProposeError::NotLeader { leader_hint }.into()));
                }
                false
            }
            Event::SnapshotDue { .. } => {
                let data = self.state_machine.snapshot();
                // Refused only if a leader's snapshot arrived meanwhile: nothing to do then.
                let _ = self.raft.snapshot_taken(self.now, self.applied, data);
                true
            }
            Event::Role { role, term, leader } => {
                let previous = std::mem::replace(&mut self.role, role);
                self.roles.push_back(RoleChange { previous, role, term, leader });
                false
            }
        }
    }

    fn apply(&mut self, apply: Apply) {
        match apply {
            Apply::Entry(entry) => {
                if !self.raft.planted(PlantedBug::ApplyOutOfOrder) {
                    assert_eq!(entry.index, self.applied + 1, "entries are applied in order, once");
                }
                self.applied = self.applied.max(entry.index);
                self.state_machine.applying(&entry);
                if let Some(waiting) = self.changes.remove(&entry.index) {
                    let done = matches!(entry.payload, Payload::Membership(_)) && waiting.term == entry.term;
                    self.answer(waiting, if done { Ok(Done::Changed) } else { Err(WriteError::Lost) });
                }
                let output = match &entry.payload {
                    Payload::Command(command) => Some(self.state_machine.apply(entry.index, command)),
                    Payload::Noop | Payload::Membership(_) => None,
                };
                if let Some(waiting) = self.writes.remove(&entry.index) {
                    let outcome = match output {
                        Some(output) if waiting.term == entry.term => {
                            Ok(Done::Applied { index: entry.index, output })
                        }
                        _ => Err(WriteError::Lost),
                    };
                    self.answer(waiting, outcome);
                }
            }
            Apply::Snapshot(snapshot) => {
                let index = snapshot.meta.index;
                self.applied = index;
                self.state_machine.restore(&snapshot);
                // Whether a covered entry was ours, or another leader's at its index, is gone
                // with the log it sat in.
                let mut covered = self.writes.split_off(&(index + 1));
                std::mem::swap(&mut covered, &mut self.writes);
                let mut covered_changes = self.changes.split_off(&(index + 1));
                std::mem::swap(&mut covered_changes, &mut self.changes);
                for waiting in covered.into_values().chain(covered_changes.into_values()) {
                    self.answer(waiting, Err(WriteError::Unknown));
                }
            }
        }
    }

    /// Checks what must hold after every step (test, simulation and fuzz builds).
    pub fn check_invariants(&self) {
        assert!(
            self.applied <= self.raft.commit_index().max(self.raft.snapshot_index()),
            "applied only what is committed"
        );
        if let Some((&first, _)) = self.writes.first_key_value() {
            assert!(first > self.applied, "a write waits only for an entry not yet applied");
        }
        if let Some((&first, _)) = self.changes.first_key_value() {
            assert!(first > self.applied, "a change waits only for an entry not yet applied");
        }
        if self.raft.role() != Role::Leader {
            assert!(self.reads.is_empty(), "only a leader confirms reads");
        }
    }
}

#[cfg(test)]
mod tests;
