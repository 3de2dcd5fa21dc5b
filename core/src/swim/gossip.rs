//! Sending: gossip of queued broadcasts, datagrams that piggyback them, and push/pull exchanges
//! of full state (periodic, on join, and serf's reconnect to dead members).

use core::net::SocketAddr;
use std::time::Duration;

use super::broadcast::retransmit_limit;
use super::{Leave, Swim};
use crate::gossip::{Channel, Transmit};
use crate::limits::{NODE_NAME_BYTES_MAX, STREAM_FRAME_BYTES_MAX};
use crate::wire::{DatagramBuilder, MemberState, Message, NodeAddr, PushPullMember};
use crate::Instant;

impl Swim {
    /// Gossips queued broadcasts to `gossip_nodes` random members: live ones, and those dead for
    /// less than `gossip_to_the_dead_time`.
    pub(super) fn gossip(&mut self, now: Instant) {
        // The common case in a quiet cluster: nothing to say, so no targets to pick.
        if self.broadcasts.is_empty() {
            return;
        }
        let to_the_dead = self.config.gossip_to_the_dead_time;
        let targets = self.random_members(usize::from(self.config.gossip_nodes), |m| match m.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead => now.saturating_duration_since(m.state_change) < to_the_dead,
            MemberState::Left => false,
        });
        let limit = retransmit_limit(self.config.retransmit_mult, self.live_members());
        for target in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            let mut datagram = DatagramBuilder::new(self.datagram_budget);
            if self.broadcasts.fill(&mut datagram, limit) == 0 {
                break;
            }
            let addr = self.members[&target].addr;
            self.transmits.push_back(Transmit {
                dst: addr,
                channel: Channel::Datagram,
                payload: datagram.finish(),
            });
            self.stats.gossip_sent += 1;
        }
    }

    pub(super) fn send(&mut self, dst: SocketAddr, channel: Channel, message: Message) {
        self.send_with(dst, channel, message, &[]);
    }

    /// Sends `message` (and `extra` messages) to `dst`; datagrams also carry as much queued
    /// gossip as fits.
    pub(super) fn send_with(
        &mut self,
        dst: SocketAddr,
        channel: Channel,
        message: Message,
        extra: &[Message],
    ) {
        let payload = match channel {
            Channel::Stream => message.encode_frame(),
            Channel::Datagram => {
                let mut datagram = DatagramBuilder::new(self.datagram_budget);
                let pushed = datagram.push_entry(&message.encode_entry());
                assert!(pushed, "a single message fits a datagram");
                for message in extra {
                    datagram.push_entry(&message.encode_entry());
                }
                if !self.broadcasts.is_empty() {
                    let limit = retransmit_limit(self.config.retransmit_mult, self.live_members());
                    self.broadcasts.fill(&mut datagram, limit);
                }
                datagram.finish()
            }
        };
        self.transmits.push_back(Transmit { dst, channel, payload });
    }

    pub(super) fn send_push_pull(&mut self, dst: SocketAddr, join: bool, reply: bool) {
        let my_state = if self.leave == Leave::Staying { MemberState::Alive } else { MemberState::Left };
        let me = PushPullMember {
            node: self.me.clone(),
            meta: self.meta.clone(),
            incarnation: self.incarnation,
            state: my_state,
        };
        // The frame must stay within its limit however many (and however large) members are
        // known: this node first, then live members, then dead and left ones, until it is full.
        let serf = self.serf.state();
        let serf_bytes: usize = serf.events.iter().map(|e| push_pull_event_bytes(&e.name, &e.payload)).sum();
        let mut budget =
            STREAM_FRAME_BYTES_MAX - PUSH_PULL_HEADER_BYTES_MAX - serf_bytes - push_pull_member_bytes(&me);
        let mut members = vec![me];
        let live_first = self
            .members
            .iter()
            .filter(|(_, m)| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .chain(
                self.members.iter().filter(|(_, m)| matches!(m.state, MemberState::Dead | MemberState::Left)),
            );
        for (name, m) in live_first {
            let member = PushPullMember {
                node: NodeAddr { name: name.clone(), addr: m.addr },
                meta: m.meta.clone(),
                incarnation: m.incarnation,
                state: m.state,
            };
            let size = push_pull_member_bytes(&member);
            if size > budget {
                self.stats.push_pull_truncated += 1;
                break;
            }
            budget -= size;
            members.push(member);
        }
        let message = Message::PushPull { join, reply, source: self.me.clone(), members, serf };
        self.send(dst, Channel::Stream, message);
        if !reply {
            self.stats.push_pulls_sent += 1;
        }
    }

    /// serf's reconnect: a push/pull with a random dead member, attempted with probability
    /// `dead / live` so that a large healthy cluster does not hammer a few dead nodes.
    pub(super) fn reconnect(&mut self) {
        let dead = self.members.values().filter(|m| m.state == MemberState::Dead).count();
        if dead == 0 {
            return;
        }
        let live = self.live_members();
        if self.rng.below(live as u64) >= dead as u64 {
            return;
        }
        if let Some(name) = self.random_members(1, |m| m.state == MemberState::Dead).pop() {
            let addr = self.members[&name].addr;
            self.send_push_pull(addr, false, false);
        }
    }

    /// The periodic push/pull: full state exchanged with one random live member.
    pub(super) fn push_pull_random(&mut self) {
        if let Some(peer) = self.random_members(1, |m| m.state == MemberState::Alive).pop() {
            let addr = self.members[&peer].addr;
            self.send_push_pull(addr, false, false);
        }
    }

    /// Sends every join still unanswered again (Consul's `retry_join`).
    pub(super) fn retry_joins(&mut self) {
        for seed in self.joins_pending.clone() {
            self.send_push_pull(seed, true, false);
        }
    }
}

/// The push/pull interval for `nodes` members: memberlist's `pushPullScale`, which stretches it
/// above 32 members so the bandwidth of full-state exchanges stays flat.
pub(super) fn push_pull_scale(interval: Duration, nodes: usize) -> Duration {
    if nodes <= PUSH_PULL_SCALE_THRESHOLD {
        return interval;
    }
    // ⌈log2 n⌉ − log2 32 + 1, in integers so that every platform computes the same schedule.
    let log2_ceil = usize::BITS - (nodes - 1).leading_zeros();
    interval * (log2_ceil - PUSH_PULL_SCALE_THRESHOLD.trailing_zeros() + 1)
}

/// The encoded size of one push/pull member entry (an IPv6 address at most).
fn push_pull_member_bytes(member: &PushPullMember) -> usize {
    (1 + member.node.name.len()) + (1 + 16 + 2) + (2 + member.meta.len()) + 8 + 1
}

/// The encoded size of one push/pull user event entry.
pub(super) fn push_pull_event_bytes(name: &str, payload: &[u8]) -> usize {
    8 + (1 + name.len()) + (2 + payload.len())
}

/// A push/pull frame's bytes besides its members and events: version, kind, flags, source,
/// member count, both clocks, event count.
const PUSH_PULL_HEADER_BYTES_MAX: usize = 1 + 1 + 1 + (1 + NODE_NAME_BYTES_MAX + 19) + 4 + 8 + 8 + 4;

/// Above this many members the push/pull interval grows (memberlist's `pushPullScaleThreshold`).
const PUSH_PULL_SCALE_THRESHOLD: usize = 32;
