//! Failure detection by probing (SWIM §4, memberlist's `probeNode`): one member per probe
//! interval is pinged; without an ack by the probe timeout, `indirect_checks` others are asked to
//! ping it (and to nack if they cannot), and it is pinged over the stream channel; without any ack
//! by the end of the interval it is suspected. This node also relays indirect pings for others.

use core::net::SocketAddr;

use super::timer::Timer;
use super::{Swim, RELAYS_MAX};
use crate::gossip::Channel;
use crate::wire::{MemberState, Message, NodeAddr};
use crate::Instant;

/// The probe of one member in flight this probe interval.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// The member probed.
    pub(super) target: String,
    /// The sequence number its acks and nacks carry.
    pub(super) seq: u32,
    /// When the direct ping gives up and indirect probes start; `None` once they have.
    pub(super) direct_deadline: Option<Instant>,
    /// Nacks asked for from relays (Lifeguard), to judge our own health by how many arrive.
    pub(super) nacks_expected: u32,
    /// Nacks received.
    pub(super) nacks: u32,
}

/// An indirect ping this node relays for another member.
#[derive(Debug, Clone)]
pub(super) struct Relay {
    /// Who asked, to be acked (or nacked) back.
    pub(super) requester: SocketAddr,
    /// The requester's sequence number, which the answer carries.
    pub(super) seq: u32,
    /// Whether the requester wants a nack if the target does not answer in time.
    pub(super) nack: bool,
    /// When the relay gives up on the target.
    pub(super) deadline: Instant,
}

impl Swim {
    pub(super) fn handle_timeout_probe_round(&mut self, now: Instant) {
        if let Some(probe) = self.probe.take() {
            self.handle_probe_failed(now, probe);
        }
        self.timers.set(Timer::Probe, now + self.awareness.scale(self.config.probe_interval));
        let Some(target) = self.next_probe_target() else { return };
        let seq = self.next_seq();
        let member = &self.members[&target];
        let (addr, state, incarnation) = (member.addr, member.state, member.incarnation);
        let ping = Message::Ping { seq, target: target.clone(), source: self.me.clone() };
        let mut extra = Vec::new();
        if state == MemberState::Suspect && self.config.lifeguard {
            // The buddy system: tell the suspect, so it can refute before the timeout.
            extra.push(Message::Suspect { incarnation, node: target.clone(), from: self.me.name.clone() });
        }
        self.send_with(addr, Channel::Datagram, ping, &extra);
        self.stats.pings_sent += 1;
        let direct_deadline = now + self.awareness.scale(self.config.probe_timeout);
        self.probe =
            Some(Probe { target, seq, direct_deadline: Some(direct_deadline), nacks_expected: 0, nacks: 0 });
    }

    /// The direct ping went unanswered: ask others, and try the stream channel.
    pub(super) fn handle_timeout_direct_probe(&mut self) {
        let probe = self.probe.as_mut().expect("checked by the caller");
        probe.direct_deadline = None;
        let (target, seq) = (probe.target.clone(), probe.seq);
        let Some(member) = self.members.get(&target) else { return };
        let target_node = NodeAddr { name: target.clone(), addr: member.addr };
        let relays =
            self.random_members(usize::from(self.config.indirect_checks), |m| m.state == MemberState::Alive);
        let relays: Vec<String> = relays.into_iter().filter(|name| *name != target).collect();
        for relay in &relays {
            let request = Message::IndirectPing {
                seq,
                target: target_node.clone(),
                nack: self.config.lifeguard,
                source: self.me.clone(),
            };
            self.send(self.members[relay].addr, Channel::Datagram, request);
            self.stats.indirect_pings_sent += 1;
        }
        if self.config.lifeguard {
            self.probe.as_mut().expect("still probing").nacks_expected = relays.len() as u32;
        }
        if !self.config.disable_tcp_pings {
            let ping = Message::Ping { seq, target: target.clone(), source: self.me.clone() };
            self.send(target_node.addr, Channel::Stream, ping);
            self.stats.pings_sent += 1;
        }
    }

    fn handle_probe_failed(&mut self, now: Instant, probe: Probe) {
        self.stats.probes_failed += 1;
        if self.config.lifeguard {
            // Lifeguard: missing nacks suggest our own network or process is the problem.
            let delta = if probe.nacks_expected > 0 {
                i64::from(probe.nacks_expected - probe.nacks.min(probe.nacks_expected))
            } else {
                1
            };
            self.awareness.apply(delta);
        }
        let Some(member) = self.members.get(&probe.target) else { return };
        if member.state != MemberState::Alive && member.state != MemberState::Suspect {
            return;
        }
        let suspect = Message::Suspect {
            incarnation: member.incarnation,
            node: probe.target.clone(),
            from: self.me.name.clone(),
        };
        self.handle_suspect(now, suspect);
    }

    pub(super) fn handle_ack(&mut self, seq: u32) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            if self.config.lifeguard {
                self.awareness.apply(-1);
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            let removed = self.relay_deadlines.remove(&(relay.deadline, seq));
            assert!(removed, "a relay has a deadline");
            self.send(relay.requester, Channel::Datagram, Message::Ack { seq: relay.seq });
            return;
        }
        self.stats.acks_unmatched += 1;
    }

    pub(super) fn handle_indirect_ping(
        &mut self,
        now: Instant,
        seq: u32,
        target: NodeAddr,
        nack: bool,
        source: NodeAddr,
    ) {
        if self.relays.len() >= RELAYS_MAX {
            self.stats.refused_full += 1;
            return;
        }
        let our_seq = self.next_seq();
        let deadline = now + self.config.probe_timeout;
        self.relays.insert(our_seq, Relay { requester: source.addr, seq, nack, deadline });
        self.relay_deadlines.insert((deadline, our_seq));
        let ping = Message::Ping { seq: our_seq, target: target.name, source: self.me.clone() };
        self.send(target.addr, Channel::Datagram, ping);
        self.stats.pings_sent += 1;
    }

    /// The next member to probe: round-robin over a list reshuffled after each pass, skipping
    /// dead and left members.
    fn next_probe_target(&mut self) -> Option<String> {
        for _ in 0..=self.probe_order.len() {
            if self.probe_index >= self.probe_order.len() {
                self.rng.shuffle(&mut self.probe_order);
                self.probe_index = 0;
            }
            let name = self.probe_order.get(self.probe_index)?.clone();
            self.probe_index += 1;
            if matches!(self.members[&name].state, MemberState::Alive | MemberState::Suspect) {
                return Some(name);
            }
        }
        None
    }

    /// Ends every relayed ping whose deadline is at or before `now`, earliest first, nacking
    /// it to its requester if asked to (Lifeguard).
    pub(super) fn expire_relays(&mut self, now: Instant) {
        while let Some(&(deadline, seq)) = self.relay_deadlines.first() {
            if deadline > now {
                break;
            }
            self.relay_deadlines.pop_first();
            let relay = self.relays.remove(&seq).expect("a relay deadline has a relay");
            if relay.nack {
                self.send(relay.requester, Channel::Datagram, Message::Nack { seq: relay.seq });
                self.stats.nacks_sent += 1;
            }
        }
    }
}
