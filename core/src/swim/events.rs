//! serf's layer above the failure detector: user events ordered by a Lamport clock and
//! delivered at most once, and queries whose answers are collected until a deadline.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::broadcast::{self, Subject};
use super::gossip::push_pull_event_bytes;
use super::{FireError, QueryRequest, QueryResult, Swim, UserEvent};
use crate::limits::{
    MEMBERS_MAX, NODE_NAME_BYTES_MAX, PUSH_PULL_EVENT_BYTES_MAX, USER_EVENTS_PER_LTIME_MAX,
    USER_EVENT_BUFFER, USER_EVENT_BYTES_MAX,
};
use crate::node::Channel;
use crate::wire::{Message, PushPullEvent, SerfState};
use crate::Instant;

/// A query asked here, collecting answers until its deadline.
#[derive(Debug, Clone)]
pub(super) struct PendingQuery {
    /// Its Lamport time; an answer must carry it too.
    pub(super) ltime: u64,
    /// What was asked.
    pub(super) name: String,
    /// When the answers so far are reported.
    pub(super) deadline: Instant,
    /// The answers so far, by member name.
    pub(super) responses: BTreeMap<String, Bytes>,
    /// Live members when it was asked: once this many have answered, it is reported at once.
    pub(super) members: usize,
}

/// The user events seen at one Lamport time: (time, [(name, payload)]).
pub(super) type SeenEvents = (u64, Vec<(String, Bytes)>);

/// The queries seen at one Lamport time: (time, [(asker, id)]).
pub(super) type SeenQueries = (u64, Vec<(String, u32)>);

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
        let ltime = self.event_clock;
        // A forged event at the end of time can push the clock there; refuse rather than wrap.
        self.event_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
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
        let ltime = self.query_clock;
        self.query_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
        let id = self.query_id_next;
        self.query_id_next = self.query_id_next.wrapping_add(1);
        let members = self.live_members();
        let timeout =
            self.config.gossip_interval * QUERY_TIMEOUT_MULT * broadcast::log10_ceil(members + 1).max(1);
        let deadline = now + timeout;
        if let Some(stale) = self.queries_pending.insert(
            id,
            PendingQuery { ltime, name: name.clone(), deadline, responses: BTreeMap::new(), members },
        ) {
            // The id space wrapped onto a query still waiting: end the old one first.
            self.query_deadlines.remove(&(stale.deadline, id));
        }
        self.query_deadlines.insert((deadline, id));
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
        // Witness: the clock moves past every time seen, so events fired here come later.
        self.event_clock = self.event_clock.max(ltime.saturating_add(1));
        let forgotten = self.event_clock > USER_EVENT_BUFFER && ltime < self.event_clock - USER_EVENT_BUFFER;
        if forgotten || ltime < self.event_min_time {
            self.stats.user_events_too_old += 1;
            return;
        }
        let slot = &mut self.events_seen[(ltime % USER_EVENT_BUFFER) as usize];
        match slot {
            Some((seen, events)) if *seen == ltime => {
                if events.iter().any(|(n, p)| *n == name && *p == payload) {
                    return;
                }
                if events.len() >= USER_EVENTS_PER_LTIME_MAX {
                    self.stats.refused_full += 1;
                    return;
                }
                events.push((name.clone(), payload.clone()));
            }
            _ => {
                // The slot's previous Lamport time is forgotten: so are its queued broadcasts.
                if let Some((old, events)) = slot.replace((ltime, vec![(name.clone(), payload.clone())])) {
                    for place in 0..events.len() {
                        self.broadcasts.remove(&Subject::Event(old, place));
                    }
                }
            }
        }
        let slot = &self.events_seen[(ltime % USER_EVENT_BUFFER) as usize];
        let place = slot.as_ref().expect("filled above").1.len() - 1;
        let message = Message::UserEvent { ltime, name: name.clone(), payload: payload.clone() };
        let entry = message.encode_entry();
        // An entry no datagram can carry would sit in the queue forever: deliver, do not gossip.
        if entry.len() < self.datagram_budget {
            self.broadcasts.push_subject(Subject::Event(ltime, place), entry);
        }
        self.user_events.push_back(UserEvent { ltime, name, payload });
    }

    /// serf's `handleQuery`: witness the clock, drop old and duplicate queries, gossip the rest
    /// on and hand them to the node to answer.
    pub(super) fn handle_query(&mut self, message: Message) {
        let Message::Query { id, ltime, name, payload, source, .. } = &message else {
            unreachable!("query only")
        };
        self.query_clock = self.query_clock.max(ltime.saturating_add(1));
        if self.query_clock > QUERY_BUFFER && *ltime < self.query_clock - QUERY_BUFFER {
            self.stats.user_events_too_old += 1;
            return;
        }
        let slot = &mut self.queries_seen[(ltime % QUERY_BUFFER) as usize];
        match slot {
            Some((seen, queries)) if *seen == *ltime => {
                if queries.iter().any(|(asker, q)| *asker == source.name && q == id) {
                    return;
                }
                if queries.len() >= USER_EVENTS_PER_LTIME_MAX {
                    self.stats.refused_full += 1;
                    return;
                }
                queries.push((source.name.clone(), *id));
            }
            _ => {
                if let Some((old, queries)) = slot.replace((*ltime, vec![(source.name.clone(), *id)])) {
                    for place in 0..queries.len() {
                        self.broadcasts.remove(&Subject::Query(old, place));
                    }
                }
            }
        }
        let slot = &self.queries_seen[(ltime % QUERY_BUFFER) as usize];
        let place = slot.as_ref().expect("filled above").1.len() - 1;
        let entry = message.encode_entry();
        if entry.len() < self.datagram_budget {
            self.broadcasts.push_subject(Subject::Query(*ltime, place), entry);
        }
        self.query_requests.push_back(QueryRequest {
            id: *id,
            ltime: *ltime,
            name: name.clone(),
            payload: payload.clone(),
            source: source.clone(),
        });
    }

    pub(super) fn handle_query_response(&mut self, id: u32, ltime: u64, from: String, payload: Bytes) {
        match self.queries_pending.get_mut(&id) {
            Some(pending) if pending.ltime == ltime && pending.responses.len() < MEMBERS_MAX => {
                pending.responses.insert(from, payload);
                // Every member asked has answered: report now rather than at the timeout, as
                // serf's key manager returns once NumResp reaches NumNodes.
                if pending.responses.len() >= pending.members {
                    let pending = self.queries_pending.remove(&id).expect("just found");
                    self.query_deadlines.remove(&(pending.deadline, id));
                    let PendingQuery { name, responses, members, .. } = pending;
                    self.query_results.push_back(QueryResult { id, name, responses, members });
                }
            }
            _ => self.stats.messages_ignored += 1,
        }
    }

    /// serf's merge of a push/pull's user state: witness both clocks, so that events and
    /// queries fired here are ordered after everything the sender has seen, then take the recent
    /// events gossip may have missed. After a join, events older than the join are not delivered
    /// (Consul joins without `-replay`).
    pub(super) fn merge_serf_state(&mut self, serf: SerfState, joined: bool) {
        self.event_clock = self.event_clock.max(serf.event_clock);
        self.query_clock = self.query_clock.max(serf.query_clock);
        if joined {
            self.event_min_time = self.event_min_time.max(serf.event_clock);
        }
        for event in serf.events {
            self.handle_user_event(event.ltime, event.name, event.payload);
        }
    }

    /// This node's clocks and the user events it still remembers, newest first, within
    /// [`PUSH_PULL_EVENT_BYTES_MAX`].
    pub(super) fn serf_state(&self) -> SerfState {
        let mut remembered: Vec<_> = self
            .events_seen
            .iter()
            .flatten()
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
}

/// How many recent query Lamport times are remembered to drop duplicates.
pub(super) const QUERY_BUFFER: u64 = 512;

/// Scales the query timeout (serf's `QueryTimeoutMult`).
const QUERY_TIMEOUT_MULT: u32 = 16;
