//! serf's layer above the failure detector: user events ordered by a Lamport clock and
//! delivered at most once, and queries whose answers are collected until a deadline.
//!
//! [`Serf`] holds this layer's state and its bookkeeping, which needs nothing of the member
//! table: clocks, duplicate buffers, pending queries and the queues the application drains. The
//! `impl Swim` block at the end is the glue to the rest of the node: gossip through the
//! broadcast queue, the live-member count a query waits for, and the counters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::broadcast::{self, Subject};
use super::gossip::push_pull_event_bytes;
use super::{FireError, QueryRequest, QueryResult, Swim, UserEvent};
use crate::gossip::Channel;
use crate::limits::{
    MEMBERS_MAX, NODE_NAME_BYTES_MAX, PUSH_PULL_EVENT_BYTES_MAX, USER_EVENTS_PER_LTIME_MAX,
    USER_EVENT_BUFFER, USER_EVENT_BYTES_MAX,
};
use crate::wire::{Message, PushPullEvent, SerfState};
use crate::Instant;

/// How many recent query Lamport times are remembered to drop duplicates.
const QUERY_BUFFER: u64 = 512;

/// The most events and queries the duplicate buffers remember, each of which may have a
/// broadcast queued.
#[cfg(any(test, feature = "invariants"))]
pub(super) const EVENT_BROADCASTS_MAX: usize =
    (USER_EVENT_BUFFER + QUERY_BUFFER) as usize * USER_EVENTS_PER_LTIME_MAX;

/// Scales the query timeout (serf's `QueryTimeoutMult`).
const QUERY_TIMEOUT_MULT: u32 = 16;

/// serf's user events and queries: their Lamport clocks, what was seen recently (to deliver each
/// at most once), the queries asked here, and what waits for the application.
#[derive(Debug)]
pub(super) struct Serf {
    /// The Lamport clock of user events: the time the next event fired here gets.
    event_clock: u64,
    /// Events before this Lamport time are not delivered: they happened before this node joined.
    event_min_time: u64,
    /// The events (name, payload) seen at each of the last [`USER_EVENT_BUFFER`] Lamport times,
    /// to drop duplicates (serf's `eventBuffer`).
    events_seen: SeenBuffer<(String, Bytes)>,
    /// User events to deliver to the application.
    user_events: VecDeque<UserEvent>,
    /// The Lamport clock of queries.
    pub(super) query_clock: u64,
    /// The queries (asker, id) seen at each of the last [`QUERY_BUFFER`] Lamport times.
    queries_seen: SeenBuffer<(String, u32)>,
    /// Queries asked here, waiting for answers until their deadline, by id.
    queries_pending: BTreeMap<u32, PendingQuery>,
    /// One deadline per pending query, ordered by time then id so that ties end in a fixed
    /// order. A keyed set rather than a slot in the timer table: there is one per query.
    query_deadlines: BTreeSet<(Instant, u32)>,
    /// The id the next query asked here gets.
    query_id_next: u32,
    /// Queries to answer, for the application.
    query_requests: VecDeque<QueryRequest>,
    /// Queries asked here that are complete, for the application.
    query_results: VecDeque<QueryResult>,
}

/// A query asked here, collecting answers until its deadline.
#[derive(Debug, Clone)]
struct PendingQuery {
    /// Its Lamport time; an answer must carry it too.
    ltime: u64,
    /// What was asked.
    name: String,
    /// When the answers so far are reported.
    deadline: Instant,
    /// The answers so far, by member name.
    responses: BTreeMap<String, Bytes>,
    /// Live members when it was asked: once this many have answered, it is reported at once.
    members: usize,
}

impl PendingQuery {
    /// The result to report for query `id`.
    fn into_result(self, id: u32) -> QueryResult {
        let PendingQuery { name, responses, members, .. } = self;
        QueryResult { id, name, responses, members }
    }
}

/// What the serf layer made of an event or query that arrived (or was fired here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Older than the duplicate buffer remembers, or than this node's join: dropped.
    TooOld,
    /// Seen already: dropped.
    Duplicate,
    /// Too many distinct ones at its Lamport time: refused.
    Full,
    /// New: delivered, and gossiped as the `place`th at its Lamport time. Its slot held another
    /// Lamport time before, `forgotten` = (that time, how many it held): their broadcasts go too.
    New {
        /// Its index among those seen at its Lamport time.
        place: usize,
        /// The Lamport time and count the slot forgot, if any.
        forgotten: Option<(u64, usize)>,
    },
}

/// What was seen at each of the last `n` Lamport times, in slot `ltime % n` (serf's
/// `eventBuffer` and `queryBuffer`). A slot holds one Lamport time; a later time that maps to it
/// replaces it.
#[derive(Debug, Clone)]
struct SeenBuffer<K> {
    /// By `ltime % slots.len()`: the Lamport time the slot holds and the keys seen at it.
    slots: Vec<Option<(u64, Vec<K>)>>,
}

impl<K: PartialEq> SeenBuffer<K> {
    /// A buffer remembering `times` Lamport times.
    fn new(times: u64) -> SeenBuffer<K> {
        SeenBuffer { slots: (0..times).map(|_| None).collect() }
    }

    /// Records `key` at `ltime`, unless it was seen already or the time is full.
    fn insert(&mut self, ltime: u64, key: K) -> Seen {
        let times = self.slots.len() as u64;
        let slot = &mut self.slots[(ltime % times) as usize];
        match slot {
            Some((seen, keys)) if *seen == ltime => {
                if keys.contains(&key) {
                    return Seen::Duplicate;
                }
                if keys.len() >= USER_EVENTS_PER_LTIME_MAX {
                    return Seen::Full;
                }
                keys.push(key);
                Seen::New { place: keys.len() - 1, forgotten: None }
            }
            _ => {
                let forgotten = slot.replace((ltime, vec![key])).map(|(old, keys)| (old, keys.len()));
                Seen::New { place: 0, forgotten }
            }
        }
    }

    /// Every Lamport time remembered, with what was seen at it, in slot order.
    fn iter(&self) -> impl Iterator<Item = &(u64, Vec<K>)> {
        self.slots.iter().flatten()
    }
}

impl Serf {
    /// A node that has seen no events or queries.
    pub(super) fn new() -> Serf {
        Serf {
            event_clock: 0,
            event_min_time: 0,
            events_seen: SeenBuffer::new(USER_EVENT_BUFFER),
            user_events: VecDeque::new(),
            query_clock: 0,
            queries_seen: SeenBuffer::new(QUERY_BUFFER),
            queries_pending: BTreeMap::new(),
            query_deadlines: BTreeSet::new(),
            query_id_next: 0,
            query_requests: VecDeque::new(),
            query_results: VecDeque::new(),
        }
    }

    /// The Lamport time of an event fired here, moving the clock past it.
    fn fire_event_time(&mut self) -> Result<u64, FireError> {
        let ltime = self.event_clock;
        // A forged event at the end of time can push the clock there; refuse rather than wrap.
        self.event_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
        Ok(ltime)
    }

    /// The Lamport time of a query asked here, moving the clock past it.
    fn fire_query_time(&mut self) -> Result<u64, FireError> {
        let ltime = self.query_clock;
        self.query_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
        Ok(ltime)
    }

    /// serf's `handleUserEvent` bookkeeping: witness the Lamport time, then judge the event.
    fn witness_user_event(&mut self, ltime: u64, name: String, payload: Bytes) -> Seen {
        // Witness: the clock moves past every time seen, so events fired here come later.
        self.event_clock = self.event_clock.max(ltime.saturating_add(1));
        let forgotten = self.event_clock > USER_EVENT_BUFFER && ltime < self.event_clock - USER_EVENT_BUFFER;
        if forgotten || ltime < self.event_min_time {
            return Seen::TooOld;
        }
        self.events_seen.insert(ltime, (name, payload))
    }

    /// serf's `handleQuery` bookkeeping: witness the Lamport time, then judge the query.
    fn witness_query(&mut self, ltime: u64, asker: String, id: u32) -> Seen {
        self.query_clock = self.query_clock.max(ltime.saturating_add(1));
        if self.query_clock > QUERY_BUFFER && ltime < self.query_clock - QUERY_BUFFER {
            return Seen::TooOld;
        }
        self.queries_seen.insert(ltime, (asker, id))
    }

    /// Starts collecting answers to a query at `ltime`, until `members` have answered or
    /// `deadline`. Returns its id.
    fn start_query(&mut self, ltime: u64, name: String, members: usize, deadline: Instant) -> u32 {
        let id = self.query_id_next;
        self.query_id_next = self.query_id_next.wrapping_add(1);
        let pending = PendingQuery { ltime, name, deadline, responses: BTreeMap::new(), members };
        if let Some(stale) = self.queries_pending.insert(id, pending) {
            // The id space wrapped onto a query still waiting: end the old one first.
            self.query_deadlines.remove(&(stale.deadline, id));
        }
        self.query_deadlines.insert((deadline, id));
        id
    }

    /// Records `from`'s answer to query `id`. Returns `false` if no such query waits (or the
    /// answer is to another query that had the same id, or the query has all the answers it
    /// can hold).
    fn record_response(&mut self, id: u32, ltime: u64, from: String, payload: Bytes) -> bool {
        let Some(pending) = self.queries_pending.get_mut(&id) else { return false };
        if pending.ltime != ltime || pending.responses.len() >= MEMBERS_MAX {
            return false;
        }
        pending.responses.insert(from, payload);
        // Every member asked has answered: report now rather than at the timeout, as serf's key
        // manager returns once NumResp reaches NumNodes.
        if pending.responses.len() >= pending.members {
            let pending = self.queries_pending.remove(&id).expect("just found");
            self.query_deadlines.remove(&(pending.deadline, id));
            self.query_results.push_back(pending.into_result(id));
        }
        true
    }

    /// Reports every query whose deadline is at or before `now`, earliest first.
    pub(super) fn expire_queries(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.query_deadlines.first() {
            if deadline > now {
                break;
            }
            self.query_deadlines.pop_first();
            let pending = self.queries_pending.remove(&id).expect("a query deadline has a query");
            self.query_results.push_back(pending.into_result(id));
        }
    }

    /// The earliest deadline of a pending query.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.query_deadlines.first().map(|&(at, _)| at)
    }

    /// Witnesses a push/pull's clocks, so that events and queries fired here are ordered after
    /// everything the sender has seen. After a join, events older than the join are not
    /// delivered (Consul joins without `-replay`).
    fn merge_clocks(&mut self, serf: &SerfState, joined: bool) {
        self.event_clock = self.event_clock.max(serf.event_clock);
        self.query_clock = self.query_clock.max(serf.query_clock);
        if joined {
            self.event_min_time = self.event_min_time.max(serf.event_clock);
        }
    }

    /// This node's clocks and the user events it still remembers, newest first, within
    /// [`PUSH_PULL_EVENT_BYTES_MAX`].
    pub(super) fn state(&self) -> SerfState {
        let mut remembered: Vec<_> = self
            .events_seen
            .iter()
            .filter(|(ltime, _)| ltime.saturating_add(USER_EVENT_BUFFER) >= self.event_clock)
            .collect();
        remembered.sort_unstable_by_key(|(ltime, _)| core::cmp::Reverse(*ltime));
        let mut events = Vec::new();
        let mut bytes = 0;
        'fill: for (ltime, seen) in remembered {
            for (name, payload) in seen {
                bytes += push_pull_event_bytes(name, payload);
                if bytes > PUSH_PULL_EVENT_BYTES_MAX {
                    break 'fill;
                }
                events.push(PushPullEvent { ltime: *ltime, name: name.clone(), payload: payload.clone() });
            }
        }
        SerfState { event_clock: self.event_clock, query_clock: self.query_clock, events }
    }

    /// The next user event for the application.
    pub(super) fn poll_user_event(&mut self) -> Option<UserEvent> {
        self.user_events.pop_front()
    }

    /// The next query for the application to answer.
    pub(super) fn poll_query_request(&mut self) -> Option<QueryRequest> {
        self.query_requests.pop_front()
    }

    /// The next complete query asked here.
    pub(super) fn poll_query_result(&mut self) -> Option<QueryResult> {
        self.query_results.pop_front()
    }

    /// Checks the tables against each other.
    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.events_seen.slots.len(), USER_EVENT_BUFFER as usize);
        assert_eq!(self.queries_seen.slots.len(), QUERY_BUFFER as usize);
        assert_eq!(self.queries_pending.len(), self.query_deadlines.len(), "one deadline per pending query");
        for &(deadline, id) in &self.query_deadlines {
            assert_eq!(self.queries_pending[&id].deadline, deadline);
        }
    }
}

impl Swim {
    /// Fires a user event: stamped with the event clock, delivered here, and gossiped.
    pub(crate) fn trigger_user_event(&mut self, name: String, payload: Bytes) -> Result<(), FireError> {
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(FireError::NameTooLong(name.len()));
        }
        let size = name.len() + payload.len();
        if size > self.config.user_event_size_limit {
            return Err(FireError::TooLarge { size, max: self.config.user_event_size_limit });
        }
        let ltime = self.serf.fire_event_time()?;
        self.handle_user_event(ltime, name, payload);
        Ok(())
    }

    /// Asks every member `name` (serf's query): answers are collected until every live member
    /// has answered or a timeout of `16 × gossip_interval × ⌈log10(n + 1)⌉` (serf's default),
    /// then reported as a [`QueryResult`]. The query is also delivered here, like any other member's.
    pub(crate) fn trigger_query(
        &mut self,
        now: Instant,
        name: String,
        payload: Bytes,
    ) -> Result<u32, FireError> {
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(FireError::NameTooLong(name.len()));
        }
        if name.len() + payload.len() > USER_EVENT_BYTES_MAX {
            return Err(FireError::TooLarge { size: name.len() + payload.len(), max: USER_EVENT_BYTES_MAX });
        }
        let ltime = self.serf.fire_query_time()?;
        let members = self.live_members();
        let timeout =
            self.config.gossip_interval * QUERY_TIMEOUT_MULT * broadcast::log10_ceil(members + 1).max(1);
        let id = self.serf.start_query(ltime, name.clone(), members, now + timeout);
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let source = self.me.clone();
        self.handle_query(Message::Query { id, ltime, name, payload, source, timeout_ms });
        Ok(id)
    }

    /// Answers a query delivered by [`Swim::poll_query_request`].
    pub(crate) fn respond(&mut self, request: &QueryRequest, payload: Bytes) {
        assert!(payload.len() <= USER_EVENT_BYTES_MAX, "the caller bounds answers");
        if request.source.name == self.me.name {
            self.handle_query_response(request.id, request.ltime, self.me.name.clone(), payload);
            return;
        }
        let from = self.me.name.clone();
        let response = Message::QueryResponse { id: request.id, ltime: request.ltime, from, payload };
        self.send(request.source.addr, Channel::Datagram, response);
    }

    /// serf's `handleUserEvent`: witness the Lamport time, drop what is too old or already seen,
    /// deliver and gossip the rest.
    pub(super) fn handle_user_event(&mut self, ltime: u64, name: String, payload: Bytes) {
        let seen = self.serf.witness_user_event(ltime, name.clone(), payload.clone());
        let message = Message::UserEvent { ltime, name, payload };
        if self.gossip_seen(seen, Subject::Event, ltime, &message) {
            let Message::UserEvent { ltime, name, payload } = message else { unreachable!("built above") };
            self.serf.user_events.push_back(UserEvent { ltime, name, payload });
        }
    }

    /// serf's `handleQuery`: witness the clock, drop old and duplicate queries, gossip the rest
    /// on and hand them to the node to answer.
    pub(super) fn handle_query(&mut self, message: Message) {
        let Message::Query { id, ltime, name, payload, source, .. } = &message else {
            unreachable!("query only")
        };
        let seen = self.serf.witness_query(*ltime, source.name.clone(), *id);
        if self.gossip_seen(seen, Subject::Query, *ltime, &message) {
            let request = QueryRequest {
                id: *id,
                ltime: *ltime,
                name: name.clone(),
                payload: payload.clone(),
                source: source.clone(),
            };
            self.serf.query_requests.push_back(request);
        }
    }

    /// An answer to a query asked here.
    pub(super) fn handle_query_response(&mut self, id: u32, ltime: u64, from: String, payload: Bytes) {
        if !self.serf.record_response(id, ltime, from, payload) {
            self.stats.messages_ignored += 1;
        }
    }

    /// serf's merge of a push/pull's user state: witness both clocks, then take the recent
    /// events gossip may have missed (see [`Serf::merge_clocks`] for what a join changes).
    pub(super) fn merge_serf_state(&mut self, serf: SerfState, joined: bool) {
        self.serf.merge_clocks(&serf, joined);
        for event in serf.events {
            self.handle_user_event(event.ltime, event.name, event.payload);
        }
    }

    /// Acts on what the serf layer made of `message`, an event or query at `ltime`: counts what
    /// was too old or refused, drops the broadcasts of a Lamport time its slot forgot, and
    /// gossips a new one under `subject`. Returns whether it is new, to be delivered.
    fn gossip_seen(
        &mut self,
        seen: Seen,
        subject: fn(u64, usize) -> Subject,
        ltime: u64,
        message: &Message,
    ) -> bool {
        let place = match seen {
            Seen::TooOld => {
                self.stats.user_events_too_old += 1;
                return false;
            }
            Seen::Duplicate => return false,
            Seen::Full => {
                self.stats.refused_full += 1;
                return false;
            }
            Seen::New { place, forgotten } => {
                // The slot's previous Lamport time is forgotten: so are its queued broadcasts.
                if let Some((old, count)) = forgotten {
                    for old_place in 0..count {
                        self.broadcasts.remove(&subject(old, old_place));
                    }
                }
                place
            }
        };
        let entry = message.encode_entry();
        // An entry no datagram can carry would sit in the queue forever: deliver, do not gossip.
        if entry.len() < self.datagram_budget {
            self.broadcasts.push_subject(subject(ltime, place), entry);
        }
        true
    }
}
