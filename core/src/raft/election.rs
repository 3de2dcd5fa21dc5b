//! Terms, votes and role changes (§5.2): pre-vote (thesis §9.6), leader stickiness and
//! check-quorum (§6.2), elections, and leadership transfer's `TimeoutNow` (§3.10).

use std::collections::BTreeSet;

use super::leader::Leader;
use super::{HardState, Index, Message, PlantedBug, Raft, RoleState, ServerId, Term, Transmit};
use crate::Instant;

impl Raft {
    /// Refuses a request for votes while a leader may still hold a lease that counted on this
    /// server (leader stickiness), so a server that was cut off cannot depose a healthy leader
    /// on its return. Returns whether the message was refused.
    pub(super) fn refuse_while_led(&mut self, now: Instant, from: ServerId, message: &Message) -> bool {
        let asks = matches!(message, Message::PreVote { .. } | Message::RequestVote { transfer: false, .. });
        if !asks || !self.in_leader_lease(now) {
            return false;
        }
        self.shared.stats.messages_ignored += 1;
        if let Message::PreVote { .. } = message {
            let term = self.shared.hard.term;
            self.shared.send(from, Message::PreVoteResponse { term, granted: false });
        }
        true
    }

    /// Compares the message's term with this server's (§5.1): a newer term makes it a follower
    /// (of the sender, if the sender leads it); an older one is refused, and the sender told
    /// the newer term so it steps down. Returns whether the message goes on to its handler.
    pub(super) fn observe_term(&mut self, now: Instant, from: ServerId, message: &Message) -> bool {
        let term = message.term();
        let leads = matches!(
            message,
            Message::AppendEntries { .. } | Message::Heartbeat { .. } | Message::InstallSnapshot { .. }
        );
        match message {
            // A pre-vote does not raise anyone's term; an answer granting one carries the asked
            // term, not a term anyone is in.
            Message::PreVote { .. } | Message::PreVoteResponse { granted: true, .. } => true,
            _ if term > self.shared.hard.term => {
                self.become_follower(now, term, leads.then_some(from));
                true
            }
            _ if term < self.shared.hard.term => {
                let stale_append = matches!(message, Message::AppendEntries { .. });
                if stale_append && self.shared.config.bug(PlantedBug::AcceptStaleTermAppend) {
                    return true;
                }
                self.shared.stats.messages_ignored += 1;
                let term = self.shared.hard.term;
                if leads {
                    self.shared.send(from, Message::HeartbeatResponse { term, round: 0 });
                } else if let Message::RequestVote { .. } = message {
                    self.shared.send(from, Message::VoteResponse { term, granted: false });
                }
                false
            }
            _ => true,
        }
    }

    pub(super) fn handle_pre_vote(&mut self, from: ServerId, term: Term, last_index: Index, last_term: Term) {
        let shared = &mut self.shared;
        let granted = term > shared.hard.term && shared.log.is_up_to_date(last_index, last_term);
        let term = if granted { term } else { shared.hard.term };
        shared.send(from, Message::PreVoteResponse { term, granted });
    }

    pub(super) fn handle_pre_vote_response(
        &mut self,
        now: Instant,
        from: ServerId,
        term: Term,
        granted: bool,
    ) {
        let RoleState::PreCandidate { votes } = &mut self.role else { return };
        if !granted {
            if term > self.shared.hard.term {
                self.become_follower(now, term, None);
            }
            return;
        }
        if term != self.shared.hard.term + 1 {
            return;
        }
        votes.insert(from);
        if self.shared.has_quorum(votes) {
            self.start_election(now, false);
        }
    }

    pub(super) fn handle_request_vote(
        &mut self,
        now: Instant,
        from: ServerId,
        term: Term,
        last_index: Index,
        last_term: Term,
    ) {
        let shared = &mut self.shared;
        let free = shared.hard.vote.is_none_or(|vote| vote == from)
            || shared.config.bug(PlantedBug::VoteTwiceInTerm);
        let granted = free && shared.log.is_up_to_date(last_index, last_term);
        if granted {
            shared.hard.vote = Some(from);
            shared.hard_state_changed();
            shared.reset_election_timer(now);
        }
        let response = Message::VoteResponse { term, granted };
        if shared.config.bug(PlantedBug::VoteBeforeFsync) {
            shared.ready.push_back(Transmit { to: from, message: response });
        } else {
            shared.send(from, response);
        }
    }

    pub(super) fn handle_vote_response(&mut self, now: Instant, from: ServerId, granted: bool) {
        let RoleState::Candidate { votes } = &mut self.role else { return };
        if granted {
            votes.insert(from);
            if self.shared.has_quorum(votes) {
                self.become_leader(now);
            }
        }
    }

    /// From the leader of this term (a stale one was refused): stand at once, skipping pre-vote,
    /// which the leader's followers would refuse. Only a voter stands; a learner told to (its
    /// promotion lost, say) ignores it.
    pub(super) fn handle_timeout_now(&mut self, now: Instant) {
        if !matches!(self.role, RoleState::Leader(_)) && self.shared.is_voter() {
            self.shared.leader_contact = None;
            self.start_election(now, true);
        }
    }

    /// The election timer fired: ask whether this server could win before raising its term.
    pub(super) fn start_pre_vote(&mut self, now: Instant) {
        self.shared.reset_election_timer(now);
        // Learners and removed servers never stand.
        if !self.shared.is_voter() {
            return;
        }
        if self.shared.is_sole_voter() {
            return self.start_election(now, false);
        }
        self.role = RoleState::PreCandidate { votes: BTreeSet::from([self.shared.config.id]) };
        let shared = &mut self.shared;
        let message = Message::PreVote {
            term: shared.hard.term + 1,
            last_index: shared.log.last_index(),
            last_term: shared.log.last_term(),
        };
        for peer in shared.voter_peers() {
            shared.send(peer, message.clone());
        }
    }

    pub(super) fn start_election(&mut self, now: Instant, transfer: bool) {
        let shared = &mut self.shared;
        shared.stats.elections += 1;
        shared.reset_election_timer(now);
        shared.hard = HardState { term: shared.hard.term + 1, vote: Some(shared.config.id) };
        shared.hard_state_changed();
        let votes = BTreeSet::from([shared.config.id]);
        if shared.has_quorum(&votes) {
            return self.become_leader(now);
        }
        self.role = RoleState::Candidate { votes };
        let shared = &mut self.shared;
        let message = Message::RequestVote {
            term: shared.hard.term,
            last_index: shared.log.last_index(),
            last_term: shared.log.last_term(),
            transfer,
        };
        for peer in shared.voter_peers() {
            shared.send(peer, message.clone());
        }
    }

    pub(super) fn become_follower(&mut self, now: Instant, term: Term, leader: Option<ServerId>) {
        let shared = &mut self.shared;
        if term > shared.hard.term {
            shared.hard = HardState { term, vote: None };
            shared.hard_state_changed();
        }
        let was = std::mem::replace(&mut self.role, RoleState::Follower { leader });
        if let RoleState::Leader(leader) = was {
            leader.step_down(&mut self.shared.events);
        }
        self.shared.reset_election_timer(now);
        if leader.is_some() {
            self.shared.leader_contact = Some(now);
        }
    }

    /// Follows `leader`, which claims this term (an append, heartbeat or snapshot chunk).
    /// `false` (and the message is ignored) if this server leads the term itself: a correct
    /// cluster never has two leaders in a term (the simulator's election-safety checker holds
    /// it to that), so the claim comes from a confused or forged peer and must not crash this
    /// one.
    pub(super) fn follow(&mut self, now: Instant, leader: ServerId, term: Term) -> bool {
        if let RoleState::Leader(_) = self.role {
            if term < self.shared.hard.term && self.shared.config.bug(PlantedBug::AcceptStaleTermAppend) {
                // The planted bug, whole: with no term check, a leader yields to any append.
                self.become_follower(now, self.shared.hard.term, Some(leader));
            } else {
                self.shared.stats.messages_ignored += 1;
                return false;
            }
        }
        self.shared.leader_contact = Some(now);
        self.shared.reset_election_timer(now);
        if !matches!(self.role, RoleState::Follower { leader: Some(known) } if known == leader) {
            self.role = RoleState::Follower { leader: Some(leader) };
        }
        true
    }

    pub(super) fn become_leader(&mut self, now: Instant) {
        let leader = Leader::elected(now, &mut self.shared);
        self.role = RoleState::Leader(Box::new(leader));
    }

    /// Whether a leader may still hold a lease that counted on this server: it heard from one
    /// within the minimum election timeout. Contact alone decides, not whether a leader is
    /// known now: a higher term learned from a stray answer forgets the leader but not the
    /// promise made to it, and a restart counts as contact (see [`Raft::new`]).
    fn in_leader_lease(&self, now: Instant) -> bool {
        matches!(self.role, RoleState::Leader(_))
            || self.shared.leader_contact.is_some_and(|at| now < at + self.shared.config.election_timeout)
    }
}
