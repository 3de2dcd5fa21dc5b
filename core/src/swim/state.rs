//! Member state changes (memberlist's `aliveNode`, `suspectNode` and `deadNode`): applying
//! alive, suspect, dead and prune claims to the member table, refuting claims about this node,
//! merging a push/pull's member list, and forgetting members long dead or left.

use core::net::SocketAddr;

use super::suspicion::{self, Suspicion};
use super::{
    is_live, Leave, Member, MemberEvent, MemberEventKind, Swim, CONFLICTS_REPORTED_MAX, MEMBERS_MAX,
};
use crate::wire::{MemberState, Message, NodeAddr, PushPullMember};
use crate::Instant;

impl Swim {
    /// memberlist's `aliveNode`: a claim that `node` is alive at `incarnation`. About this node,
    /// it is refuted if it outranks us; about a new name, the member is learned; about a known
    /// one, it applies if newer, or if it reclaims the name of a member long dead or left.
    pub(super) fn handle_alive(&mut self, now: Instant, message: Message) {
        let Message::Alive { incarnation, node, meta } = &message else { unreachable!("alive only") };
        if node.name == self.me.name {
            if node.addr != self.me.addr {
                self.report_conflict(node, *incarnation);
            }
            // Someone claims we are alive with an incarnation we never used: refute it, unless
            // we are leaving (a refutation would replace the leave in the broadcast queue).
            let newer = *incarnation > self.incarnation;
            let moved = *incarnation == self.incarnation && node.addr != self.me.addr;
            if (newer || moved) && self.leave == Leave::Staying {
                self.refute(*incarnation, Some(node.addr));
            }
            return;
        }
        let Some(member) = self.members.get(&node.name) else {
            self.add_member(now, &message);
            return;
        };
        let gone = matches!(member.state, MemberState::Dead | MemberState::Left);
        let reclaims = member.addr != node.addr
            && gone
            && now.saturating_duration_since(member.state_change) >= self.config.dead_node_reclaim_time;
        if member.addr != node.addr && !reclaims {
            // The name is held by a live node elsewhere (or died too recently to be reclaimed).
            self.stats.messages_ignored += 1;
            if is_live(member.state) {
                self.report_conflict(node, *incarnation);
            }
            return;
        }
        if *incarnation <= member.incarnation && !reclaims {
            return;
        }
        self.cancel_suspicion(&node.name);
        self.broadcasts.push(&node.name, message.encode_entry());
        if !is_live(self.members[&node.name].state) {
            self.live_others += 1;
        }
        let member = self.members.get_mut(&node.name).expect("looked up above");
        let meta_changed = member.meta != *meta;
        let restarted = *incarnation >> 32 > member.incarnation >> 32;
        member.incarnation = *incarnation;
        member.addr = node.addr;
        member.meta = meta.clone();
        if member.state != MemberState::Alive {
            member.state = MemberState::Alive;
            member.state_change = now;
        }
        let kind = if gone {
            Some(MemberEventKind::Join)
        } else if restarted {
            Some(MemberEventKind::Restart)
        } else if meta_changed {
            Some(MemberEventKind::Update)
        } else {
            None
        };
        if let Some(kind) = kind {
            self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation: *incarnation });
        }
    }

    /// Learns a member first heard of in `message`, an alive claim: announced with a `Join`
    /// event, gossiped on, and placed at random in the probe order. Refused if the table is full.
    fn add_member(&mut self, now: Instant, message: &Message) {
        let Message::Alive { incarnation, node, meta } = message else { unreachable!("alive only") };
        if self.members.len() >= MEMBERS_MAX {
            self.stats.refused_full += 1;
            return;
        }
        if self.members.is_empty() {
            self.resume_lonely_timers(now);
        }
        self.members.insert(
            node.name.clone(),
            Member {
                addr: node.addr,
                meta: meta.clone(),
                incarnation: *incarnation,
                state: MemberState::Alive,
                state_change: now,
            },
        );
        self.live_others += 1;
        // A new member goes to a random place in the probe order.
        let at = self.rng.below(self.probe_order.len() as u64 + 1) as usize;
        self.probe_order.insert(at, node.name.clone());
        if at < self.probe_index {
            self.probe_index += 1;
        }
        self.broadcasts.push(&node.name, message.encode_entry());
        let kind = MemberEventKind::Join;
        self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation: *incarnation });
    }

    pub(super) fn handle_suspect(&mut self, now: Instant, message: Message) {
        let Message::Suspect { incarnation, node, from } = &message else { unreachable!("suspect only") };
        let Some((state, known_incarnation)) = self.accused_member(*incarnation, node) else { return };
        if let Some(suspicion) = self.suspicions.get_mut(node) {
            if suspicion.incarnation == *incarnation {
                let old = suspicion.deadline();
                if suspicion.confirm(from) {
                    let new = suspicion.deadline();
                    let removed = self.suspicion_deadlines.remove(&(old, node.clone()));
                    assert!(removed, "a suspicion has a deadline");
                    self.suspicion_deadlines.insert((new, node.clone()));
                    self.broadcasts.push(node, message.encode_entry());
                }
                return;
            }
        }
        if state != MemberState::Alive && !(state == MemberState::Suspect && *incarnation > known_incarnation)
        {
            return;
        }
        self.cancel_suspicion(node);
        self.broadcasts.push(node, message.encode_entry());
        self.stats.suspicions += 1;
        let live = self.live_members();
        let mut k = if self.config.lifeguard { self.config.suspicion_mult.saturating_sub(2) } else { 0 };
        if (live as u32).saturating_sub(2) < k {
            k = 0;
        }
        let min = suspicion::timeout_min(self.config.suspicion_mult, live, self.config.probe_interval);
        let max = if self.config.lifeguard { min * self.config.suspicion_max_timeout_mult } else { min };
        let suspicion = Suspicion::new(*incarnation, from.clone(), k, min, max, now);
        self.suspicion_deadlines.insert((suspicion.deadline(), node.clone()));
        self.suspicions.insert(node.clone(), suspicion);
        if !is_live(self.members[node].state) {
            self.live_others += 1;
        }
        let member = self.members.get_mut(node).expect("looked up above");
        // A suspicion can be the first news of a member's new life: say so, or its later
        // refutation (same epoch) would raise no event and the restart would go unreported.
        let restarted = *incarnation >> 32 > member.incarnation >> 32;
        member.incarnation = *incarnation;
        member.state = MemberState::Suspect;
        member.state_change = now;
        if restarted {
            let node = NodeAddr { name: node.clone(), addr: member.addr };
            self.events.push_back(MemberEvent {
                kind: MemberEventKind::Restart,
                node,
                incarnation: *incarnation,
            });
        }
    }

    fn handle_timeout_suspicion(&mut self, now: Instant, name: String) {
        let suspicion = self.suspicions.remove(&name).expect("a suspicion deadline has a suspicion");
        let member = &self.members[&name];
        assert_eq!(member.state, MemberState::Suspect, "a suspicion is cancelled when its member changes");
        assert_eq!(member.incarnation, suspicion.incarnation);
        self.stats.deaths_declared += 1;
        let dead =
            Message::Dead { incarnation: suspicion.incarnation, node: name, from: self.me.name.clone() };
        self.handle_dead(now, dead);
    }

    pub(super) fn handle_dead(&mut self, now: Instant, message: Message) {
        let Message::Dead { incarnation, node, from } = &message else { unreachable!("dead only") };
        let Some((state, _)) = self.accused_member(*incarnation, node) else { return };
        let leaving = node == from;
        let target = if leaving { MemberState::Left } else { MemberState::Dead };
        match state {
            MemberState::Left => return,
            // Only a leave moves a dead member on (a late leave, or a force-leave).
            MemberState::Dead if !leaving => return,
            _ => {}
        }
        self.cancel_suspicion(node);
        self.broadcasts.push(node, message.encode_entry());
        if is_live(self.members[node].state) {
            self.live_others -= 1;
        }
        let member = self.members.get_mut(node).expect("looked up above");
        member.incarnation = *incarnation;
        member.state = target;
        member.state_change = now;
        let kind = if leaving { MemberEventKind::Leave } else { MemberEventKind::Failed };
        let node = NodeAddr { name: node.clone(), addr: member.addr };
        self.events.push_back(MemberEvent { kind, node, incarnation: *incarnation });
    }

    /// Forgets a member that failed or left at once, and passes the word on (serf's leave
    /// intent with `Prune`). A member alive, or alive again at a later incarnation, stays.
    pub(super) fn handle_prune(&mut self, message: Message) {
        let Message::Prune { incarnation, node } = &message else { unreachable!("prune only") };
        let Some(member) = self.members.get(node) else {
            self.stats.messages_ignored += 1;
            return;
        };
        if is_live(member.state) || member.incarnation > *incarnation {
            self.stats.messages_ignored += 1;
            return;
        }
        self.broadcasts.push(node, message.encode_entry());
        self.erase(node);
    }

    /// The member a suspicion or death claim at `incarnation` is about, if the claim applies:
    /// a claim about this node is refuted instead (unless it is leaving), one about an unknown
    /// member is ignored, and one about an older incarnation is stale.
    /// Returns its state and incarnation.
    fn accused_member(&mut self, incarnation: u64, node: &str) -> Option<(MemberState, u64)> {
        if node == self.me.name {
            if self.leave == Leave::Staying {
                self.refute(incarnation, None);
            }
            return None;
        }
        let Some(member) = self.members.get(node) else {
            self.stats.messages_ignored += 1;
            return None;
        };
        (incarnation >= member.incarnation).then_some((member.state, member.incarnation))
    }

    /// Announces this node alive with an incarnation above `accused`.
    ///
    /// A claim from a later boot epoch than ours, or one that leaves no room in this epoch, is
    /// about a life this one cannot outrank by counting. If it names our own address (`claim_addr`),
    /// it is our previous life: this node came back with a fresh data dir and restored an older
    /// epoch. It then adopts the epoch after the claim's, which [`crate::Node`] makes durable before
    /// anything more is sent. A later-epoch claim at another address, or one without an address
    /// (a gossiped suspicion), may be another node using our name or a forgery; adopting its epoch
    /// would start an epoch race, so it is ignored and counted, and push/pull corrects it.
    fn refute(&mut self, accused: u64, claim_addr: Option<SocketAddr>) {
        let epoch = self.incarnation >> 32;
        let exhausted = accused >= (epoch << 32 | u64::from(u32::MAX));
        if accused >> 32 > epoch || exhausted {
            let next_epoch = (accused >> 32) + 1;
            if claim_addr != Some(self.me.addr) || next_epoch > u64::from(u32::MAX) {
                self.stats.messages_ignored += 1;
                return;
            }
            self.incarnation = next_epoch << 32;
            self.epoch_adopted = Some(next_epoch as u32);
        } else {
            self.incarnation = self.incarnation.max(accused) + 1;
        }
        self.stats.refutations += 1;
        if self.config.lifeguard {
            self.awareness.apply(1);
        }
        let alive =
            Message::Alive { incarnation: self.incarnation, node: self.me.clone(), meta: self.meta.clone() };
        self.broadcasts.push(&self.me.name, alive.encode_entry());
    }

    /// The boot epoch this node adopted to outrank a previous life, once: the caller must make
    /// it durable before sending anything more.
    pub(crate) fn take_epoch_adopted(&mut self) -> Option<u32> {
        self.epoch_adopted.take()
    }

    /// Reports `node`'s claim on a name held elsewhere, once per name and address.
    fn report_conflict(&mut self, node: &NodeAddr, incarnation: u64) {
        if self.conflicts_reported.len() >= CONFLICTS_REPORTED_MAX {
            return;
        }
        if self.conflicts_reported.insert((node.name.clone(), node.addr)) {
            let kind = MemberEventKind::Conflict;
            self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation });
        }
    }

    fn cancel_suspicion(&mut self, name: &str) {
        if let Some(suspicion) = self.suspicions.remove(name) {
            let removed = self.suspicion_deadlines.remove(&(suspicion.deadline(), name.to_owned()));
            assert!(removed, "a suspicion has a deadline");
        }
    }

    pub(super) fn merge_remote_state(
        &mut self,
        now: Instant,
        source: &NodeAddr,
        members: Vec<PushPullMember>,
    ) {
        for remote in members {
            let PushPullMember { node, meta, incarnation, state } = remote;
            let message = match state {
                MemberState::Alive => Message::Alive { incarnation, node, meta },
                MemberState::Left => Message::Dead { incarnation, node: node.name.clone(), from: node.name },
                // memberlist prefers suspicion to death for remote claims: the member gets a
                // chance to refute.
                MemberState::Dead | MemberState::Suspect => {
                    // A claim about this node at this address is refuted at once (and may be
                    // about a previous life, whose epoch the refutation must outrank).
                    if node.name == self.me.name {
                        if node.addr == self.me.addr && self.leave == Leave::Staying {
                            self.refute(incarnation, Some(node.addr));
                        }
                        continue;
                    }
                    // An unknown member reported dead is not learned; nor is a claim about a name
                    // now held at another address (a replacement node must not inherit it).
                    if self.members.get(&node.name).map(|m| m.addr) != Some(node.addr) {
                        continue;
                    }
                    Message::Suspect { incarnation, node: node.name, from: source.name.clone() }
                }
            };
            match message {
                Message::Alive { .. } => self.handle_alive(now, message),
                Message::Dead { .. } => self.handle_dead(now, message),
                _ => self.handle_suspect(now, message),
            }
        }
    }

    pub(super) fn reap(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                let age = now.saturating_duration_since(m.state_change);
                match m.state {
                    MemberState::Dead => age >= self.config.reconnect_timeout,
                    MemberState::Left => age >= self.config.tombstone_timeout,
                    _ => false,
                }
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.erase(&name);
        }
    }

    /// Removes a dead or left member from the list (reaped, or pruned), with a `Reap` event.
    fn erase(&mut self, name: &str) {
        let member = self.members.remove(name).expect("the caller found it");
        assert!(!is_live(member.state), "only dead and left members are erased");
        let at = self.probe_order.iter().position(|n| n == name).expect("every member is in the probe order");
        self.probe_order.remove(at);
        if at < self.probe_index {
            self.probe_index -= 1;
        }
        if self.probe.as_ref().is_some_and(|p| p.target == name) {
            self.probe = None;
        }
        self.cancel_suspicion(name);
        let node = NodeAddr { name: name.to_owned(), addr: member.addr };
        let kind = MemberEventKind::Reap;
        self.events.push_back(MemberEvent { kind, node, incarnation: member.incarnation });
    }

    /// Declares dead every suspect whose suspicion times out at or before `now`, earliest
    /// first, ties by name.
    pub(super) fn expire_suspicions(&mut self, now: Instant) {
        while let Some((deadline, name)) = self.suspicion_deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.suspicion_deadlines.pop_first();
            self.handle_timeout_suspicion(now, name);
        }
    }
}
