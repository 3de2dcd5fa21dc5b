//! Unit tests of one Raft server and of small clusters driven by hand: each asserts exact
//! messages, roles and logs. The randomized, fault-injecting runs live in `muster-sim`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn cmd(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// Servers 1..=n on a perfect network with instant disks, except for links in `blocked`.
struct Net {
    servers: Vec<Raft>,
    now: Instant,
    blocked: BTreeSet<(ServerId, ServerId)>,
    /// Each server's state machine: the commands applied, in order (a snapshot holds them
    /// joined by newlines).
    state: Vec<Vec<Bytes>>,
    /// The last index each server applied.
    applied: Vec<Index>,
    events: Vec<Vec<Event>>,
    /// Persist writes automatically; when false, tests acknowledge by hand.
    auto_persist: bool,
}

impl Net {
    fn new(n: u64) -> Net {
        Net::with_config(n, |_| {})
    }

    fn with_config(n: u64, adjust: impl Fn(&mut Config)) -> Net {
        let servers = (1..=n)
            .map(|id| {
                let mut config = Config::new(id, 1..=n, id);
                adjust(&mut config);
                Raft::new(config, Restored::default(), at(0)).unwrap()
            })
            .collect();
        Net {
            servers,
            now: at(0),
            blocked: BTreeSet::new(),
            state: vec![Vec::new(); n as usize],
            applied: vec![0; n as usize],
            events: vec![Vec::new(); n as usize],
            auto_persist: true,
        }
    }

    fn server(&mut self, id: ServerId) -> &mut Raft {
        &mut self.servers[id as usize - 1]
    }

    fn propose(&mut self, id: ServerId, command: Bytes) -> Result<(Index, Term), ProposeError> {
        let now = self.now;
        self.server(id).propose(now, command)
    }

    fn read_index(&mut self, id: ServerId, ctx: u64) -> Result<(), ProposeError> {
        let now = self.now;
        self.server(id).read_index(now, ctx)
    }

    fn lease_read(&mut self, id: ServerId) -> Result<Index, ProposeError> {
        let now = self.now;
        self.server(id).lease_read(now)
    }

    fn isolate(&mut self, id: ServerId) {
        for other in 1..=self.servers.len() as u64 {
            self.blocked.insert((id, other));
            self.blocked.insert((other, id));
        }
    }

    /// Delivers messages, persists and applies until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.servers.len() {
                let now = self.now;
                if self.auto_persist {
                    while let Some(persist) = self.servers[i].poll_persist() {
                        self.servers[i].on_persisted(now, persist.id);
                        moved = true;
                    }
                }
                while let Some(apply) = self.servers[i].poll_apply() {
                    match apply {
                        Apply::Entry(entry) => {
                            self.applied[i] = entry.index;
                            if let Payload::Command(command) = entry.payload {
                                self.state[i].push(command);
                            }
                        }
                        Apply::Snapshot(snapshot) => {
                            self.applied[i] = snapshot.meta.index;
                            self.state[i] = decode_state(&snapshot.data);
                        }
                    }
                }
                while let Some(event) = self.servers[i].poll_event() {
                    if let Event::SnapshotDue { .. } = event {
                        // Snapshot at once, as an application with a cheap state would.
                        let data = encode_state(&self.state[i]);
                        let (index, now) = (self.applied[i], self.now);
                        self.servers[i].snapshot_taken(now, index, data).unwrap();
                        moved = true;
                    }
                    self.events[i].push(event);
                }
                let from = self.servers[i].id();
                while let Some(Transmit { to, message }) = self.servers[i].poll_transmit() {
                    moved = true;
                    if !self.blocked.contains(&(from, to)) {
                        self.server(to).handle_message(now, from, message);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs timers and traffic until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.settle();
            let next = self.servers.iter().map(Raft::poll_timeout).min().unwrap();
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            for server in &mut self.servers {
                if server.poll_timeout() <= now {
                    server.handle_timeout(now);
                }
            }
        }
    }

    fn leaders(&self) -> Vec<ServerId> {
        self.servers.iter().filter(|s| s.role() == Role::Leader).map(Raft::id).collect()
    }

    fn commands_applied(&self, id: ServerId) -> Vec<Bytes> {
        self.state[id as usize - 1].clone()
    }
}

fn encode_state(commands: &[Bytes]) -> Bytes {
    Bytes::from(commands.iter().map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n"))
}

fn decode_state(data: &[u8]) -> Vec<Bytes> {
    match data {
        [] => Vec::new(),
        data => data.split(|&b| b == b'\n').map(Bytes::copy_from_slice).collect(),
    }
}

#[test]
fn a_single_server_elects_itself_and_commits_once_durable() {
    let mut raft = Raft::new(Config::new(1, [1], 7), Restored::default(), at(0)).unwrap();
    let deadline = raft.poll_timeout();
    assert!(deadline >= at(1000) && deadline < at(2000), "{deadline:?}");
    raft.handle_timeout(deadline);
    assert_eq!(raft.role(), Role::Leader);
    assert_eq!(raft.term(), 1);
    let (index, term) = raft.propose(deadline, cmd("x")).unwrap();
    assert_eq!((index, term), (2, 1), "after the leader's no-op");
    assert_eq!(raft.commit_index(), 0, "nothing is committed before it is durable");
    let persist = raft.poll_persist().unwrap();
    assert_eq!(persist.hard_state, Some(HardState { term: 1, vote: Some(1) }));
    assert_eq!(persist.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [1]);
    let second = raft.poll_persist().unwrap();
    assert_eq!(second.entries.len(), 1);
    raft.on_persisted(deadline, second.id);
    assert_eq!(raft.commit_index(), 2);
    assert_eq!(raft.poll_apply(), Some(Apply::Entry(Entry { index: 1, term: 1, payload: Payload::Noop })));
    assert_eq!(raft.poll_apply(), Some(Apply::Entry(Entry::command(2, 1, cmd("x")))));
    assert_eq!(raft.poll_apply(), None);
}

#[test]
fn three_servers_elect_one_leader_and_replicate_in_order() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    let leader = leaders[0];
    for text in ["a", "b", "c"] {
        net.propose(leader, cmd(text)).unwrap();
    }
    net.run_until(net.now + Duration::from_millis(300));
    for id in 1..=3 {
        assert_eq!(net.commands_applied(id), [cmd("a"), cmd("b"), cmd("c")], "server {id}");
        assert_eq!(net.server(id).leader(), Some(leader));
    }
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    assert_eq!(net.propose(follower, cmd("d")), Err(ProposeError::NotLeader { leader_hint: Some(leader) }));
    let big = Bytes::from(vec![0; ENTRY_BYTES_MAX + 1]);
    assert_eq!(
        net.propose(leader, big),
        Err(ProposeError::TooLarge { size: ENTRY_BYTES_MAX + 1, max: ENTRY_BYTES_MAX })
    );
}

#[test]
fn a_vote_leaves_only_once_it_is_durable() {
    let mut voter = Raft::new(Config::new(2, [1, 2, 3], 2), Restored::default(), at(0)).unwrap();
    voter.handle_message(
        at(5000),
        1,
        Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false },
    );
    assert_eq!(voter.poll_transmit(), None, "held until the vote is durable");
    let persist = voter.poll_persist().unwrap();
    assert_eq!(persist.hard_state, Some(HardState { term: 1, vote: Some(1) }));
    voter.on_persisted(at(5000), persist.id);
    assert_eq!(
        voter.poll_transmit(),
        Some(Transmit { to: 1, message: Message::VoteResponse { term: 1, granted: true } })
    );
    // A second candidate in the same term is refused.
    voter.handle_message(
        at(5000),
        3,
        Message::RequestVote { term: 1, last_index: 9, last_term: 1, transfer: false },
    );
    assert_eq!(
        voter.poll_transmit(),
        Some(Transmit { to: 3, message: Message::VoteResponse { term: 1, granted: false } })
    );
}

#[test]
fn an_append_acknowledgement_waits_for_its_entries_to_be_durable() {
    let mut follower = Raft::new(Config::new(2, [1, 2, 3], 2), Restored::default(), at(0)).unwrap();
    let entry = Entry { index: 1, term: 1, payload: Payload::Noop };
    let append = Message::AppendEntries {
        term: 1,
        prev_index: 0,
        prev_term: 0,
        entries: vec![entry.clone()],
        commit: 0,
    };
    follower.handle_message(at(10), 1, append);
    assert_eq!(follower.poll_transmit(), None);
    let persist = follower.poll_persist().unwrap();
    assert_eq!(persist.entries, [entry]);
    assert_eq!(persist.hard_state, Some(HardState { term: 1, vote: None }));
    follower.on_persisted(at(10), persist.id);
    let accepted = AppendResult::Accepted { match_index: 1 };
    assert_eq!(
        follower.poll_transmit(),
        Some(Transmit {
            to: 1,
            message: Message::AppendResponse { term: 1, prev_index: 0, result: accepted }
        })
    );
}

#[test]
fn a_divergent_follower_is_repaired_one_term_at_a_time() {
    // The follower holds entries of terms 1, 2, 2, 2 the leader never committed; the leader's
    // log is 1, 3, 3. The rejection names term 2 and its first index, so the leader jumps there.
    let entries = |terms: &[Term]| -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry { index: i as Index + 1, term, payload: Payload::Noop })
            .collect()
    };
    let restored = Restored {
        hard_state: HardState { term: 2, vote: None },
        snapshot: None,
        entries: entries(&[1, 2, 2, 2]),
    };
    let mut follower = Raft::new(Config::new(2, [1, 2, 3], 2), restored, at(0)).unwrap();
    let append = Message::AppendEntries { term: 3, prev_index: 3, prev_term: 3, entries: vec![], commit: 1 };
    follower.handle_message(at(10), 1, append);
    let persist = follower.poll_persist().unwrap();
    follower.on_persisted(at(10), persist.id);
    let rejected = AppendResult::Rejected { conflict_index: 2, conflict_term: Some(2) };
    assert_eq!(
        follower.poll_transmit(),
        Some(Transmit {
            to: 1,
            message: Message::AppendResponse { term: 3, prev_index: 3, result: rejected }
        })
    );
    assert_eq!(follower.stats().appends_rejected, 1);
    // The leader's entries from index 2 replace the follower's suffix.
    let fix = Message::AppendEntries {
        term: 3,
        prev_index: 1,
        prev_term: 1,
        entries: entries(&[1, 3, 3])[1..].to_vec(),
        commit: 3,
    };
    follower.handle_message(at(20), 1, fix);
    let persist = follower.poll_persist().unwrap();
    assert_eq!(persist.truncate_from, Some(2));
    assert_eq!(persist.entries.len(), 2);
    assert_eq!(follower.last_index(), 3);
    assert_eq!(follower.entry(3).unwrap().term, 3);
    assert_eq!(follower.commit_index(), 3);
}

#[test]
fn a_leader_cut_off_from_its_majority_steps_down_and_the_majority_elects_another() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let old = net.leaders()[0];
    let term = net.server(old).term();
    net.isolate(old);
    net.run_until(net.now + Duration::from_secs(5));
    // It stepped down, and its pre-votes since then have not raised its term.
    assert_ne!(net.server(old).role(), Role::Leader, "check-quorum");
    assert_eq!(net.server(old).term(), term);
    assert_eq!(net.server(old).stats().quorum_lost, 1);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], old);
    assert!(net.server(leaders[0]).term() > net.server(old).term());
}

#[test]
fn pre_vote_keeps_a_returning_server_from_deposing_a_healthy_leader() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let term = net.server(leader).term();
    let other = (1..=3).find(|&id| id != leader).unwrap();
    net.isolate(other);
    net.run_until(net.now + Duration::from_secs(10));
    assert_eq!(net.server(other).term(), term, "pre-votes do not raise the term");
    net.blocked.clear();
    net.run_until(net.now + Duration::from_secs(3));
    assert_eq!(net.leaders(), [leader]);
    assert_eq!(net.server(leader).term(), term);
    assert_eq!(net.server(other).leader(), Some(leader));

    // A pre-vote that reaches a follower still hearing its leader is refused and counted.
    let third = (1..=3).find(|&id| id != leader && id != other).unwrap();
    let ignored = net.server(third).stats().messages_ignored;
    let (now, last_index) = (net.now, net.server(other).last_index());
    let pre_vote = Message::PreVote { term: term + 1, last_index, last_term: term };
    net.server(third).handle_message(now, other, pre_vote);
    assert_eq!(net.server(third).stats().messages_ignored, ignored + 1);
    let answer = net.server(third).poll_transmit().map(|t| (t.to, t.message));
    assert_eq!(answer, Some((other, Message::PreVoteResponse { term, granted: false })));
}

#[test]
fn read_index_waits_for_a_heartbeat_round_and_the_lease_expires_without_one() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    net.propose(leader, cmd("w")).unwrap();
    net.settle();
    net.read_index(leader, 42).unwrap();
    net.settle();
    let commit = net.server(leader).commit_index();
    let ready: Vec<_> =
        net.events[leader as usize - 1].iter().filter(|e| matches!(e, Event::ReadReady { .. })).collect();
    assert_eq!(ready, [&Event::ReadReady { ctx: 42, index: commit }]);
    assert_eq!(net.lease_read(leader), Ok(net.server(leader).commit_index()));

    // Cut off, the leader's lease runs out before anyone else could be elected, and a read
    // asked now fails when it steps down.
    net.isolate(leader);
    net.read_index(leader, 43).unwrap();
    net.run_until(net.now + Duration::from_millis(600));
    assert_eq!(net.lease_read(leader), Err(ProposeError::NotReady));
    net.run_until(net.now + Duration::from_secs(3));
    assert!(net.events[leader as usize - 1].contains(&Event::ReadFailed { ctx: 43 }));
}

/// Delivers what `from` has queued, to everyone it may reach, and nothing further.
fn deliver_from(net: &mut Net, from: ServerId) {
    let now = net.now;
    while let Some(Transmit { to, message }) = net.server(from).poll_transmit() {
        if !net.blocked.contains(&(from, to)) {
            net.server(to).handle_message(now, from, message);
        }
    }
}

/// A 3-server net with its leader elected and settled: the leader and its followers.
fn elected_three() -> (Net, ServerId, Vec<ServerId>) {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let followers = (1..=3).filter(|&id| id != leader).collect();
    (net, leader, followers)
}

/// One exchange: what the leader queued reaches the followers, and their answers reach it.
/// Each follower's pending writes are made durable first, so its answers can leave.
fn exchange(net: &mut Net, leader: ServerId, followers: &[ServerId]) {
    deliver_from(net, leader);
    for &follower in followers {
        persist(net, follower);
        deliver_from(net, follower);
    }
}

fn persist(net: &mut Net, id: ServerId) {
    let now = net.now;
    while let Some(persist) = net.server(id).poll_persist() {
        net.server(id).on_persisted(now, persist.id);
    }
}

fn reads_ready(net: &mut Net, id: ServerId) -> Vec<u64> {
    let mut ready = Vec::new();
    while let Some(event) = net.server(id).poll_event() {
        if let Event::ReadReady { ctx, .. } = event {
            ready.push(ctx);
        }
    }
    ready
}

#[test]
fn a_read_asked_while_a_round_is_out_waits_for_the_next_round() {
    // Acks of a round sent before the read was asked prove leadership only up to that send:
    // a newer leader may have committed writes since, so such a read must wait a round more.
    let (mut net, leader, followers) = elected_three();
    reads_ready(&mut net, leader);

    net.read_index(leader, 1).unwrap();
    net.read_index(leader, 2).unwrap();
    exchange(&mut net, leader, &followers);
    assert_eq!(reads_ready(&mut net, leader), [1], "read 2 came after the round left");

    // The leader sent the next round at once for the read still waiting; its acks release it.
    exchange(&mut net, leader, &followers);
    assert_eq!(reads_ready(&mut net, leader), [2]);
}

#[test]
fn the_published_lease_ends_exactly_where_lease_reads_stop() {
    // The io shell serves default reads from `lease_until` without asking Raft again, so it
    // must agree with `lease_read` to the nanosecond.
    let (mut net, leader, followers) = elected_three();
    let follower = followers[0];
    assert_eq!(net.server(follower).lease_until(), None, "a follower holds no lease");

    let until = net.server(leader).lease_until().expect("a leader that committed").expect("not a sole voter");
    assert!(until > net.now);
    let last_held = Instant::from_nanos(until.as_nanos() - 1);
    let commit = net.server(leader).commit_index();
    assert_eq!(net.server(leader).lease_read(last_held), Ok(commit));
    assert_eq!(net.server(leader).lease_read(until), Err(ProposeError::NotReady));

    let mut alone = Net::new(1);
    alone.run_until(at(3000));
    assert_eq!(alone.leaders(), [1]);
    assert_eq!(alone.server(1).lease_until(), Some(None), "a sole voter's lease never ends");
}

#[test]
fn a_confirmed_read_is_released_as_soon_as_its_index_is_applied() {
    let (mut net, leader, followers) = elected_three();
    reads_ready(&mut net, leader);

    // "w" commits on the leader, which does not apply it yet.
    let (index, _) = net.propose(leader, cmd("w")).unwrap();
    persist(&mut net, leader);
    exchange(&mut net, leader, &followers);
    assert_eq!(net.server(leader).commit_index(), index);

    net.read_index(leader, 7).unwrap();
    exchange(&mut net, leader, &followers);
    assert_eq!(reads_ready(&mut net, leader), [] as [u64; 0], "confirmed, but its index is not applied");
    match net.server(leader).poll_apply() {
        Some(Apply::Entry(entry)) => {
            assert_eq!((entry.index, entry.payload), (index, Payload::Command(cmd("w"))))
        }
        other => panic!("expected the entry of \"w\", got {other:?}"),
    }
    assert_eq!(reads_ready(&mut net, leader), [7]);
}

#[test]
fn a_stale_leader_learns_the_new_term_from_any_answer() {
    let mut raft = Raft::new(Config::new(1, [1, 2, 3], 1), Restored::default(), at(0)).unwrap();
    raft.handle_timeout(raft.poll_timeout());
    assert_eq!(raft.role(), Role::PreCandidate);
    raft.handle_message(at(2000), 2, Message::PreVoteResponse { term: 5, granted: false });
    assert_eq!((raft.role(), raft.term()), (Role::Follower, 5));
}

#[test]
fn messages_of_an_older_term_change_nothing_and_are_told_the_newer_one() {
    let (mut net, leader, followers) = elected_three();
    let (follower, stranger) = (followers[0], followers[1]);
    let (now, term, last) = (net.now, net.server(follower).term(), net.server(follower).last_index());
    assert!(term >= 1);
    let ignored = net.server(follower).stats().messages_ignored;

    // An append from a deposed leader: had it been taken, its entry would replace the first.
    let first_term = net.server(follower).shared.log.term_at(1);
    let entries = vec![Entry::command(1, term - 1, cmd("stale"))];
    let append = Message::AppendEntries { term: term - 1, prev_index: 0, prev_term: 0, entries, commit: 1 };
    net.server(follower).handle_message(now, stranger, append);
    let vote = Message::RequestVote { term: term - 1, last_index: last + 5, last_term: term, transfer: true };
    net.server(follower).handle_message(now, stranger, vote);

    assert_eq!(net.server(follower).last_index(), last, "its log is untouched");
    assert_eq!(net.server(follower).shared.log.term_at(1), first_term);
    assert_eq!(net.server(follower).term(), term);
    assert_eq!(net.server(follower).leader(), Some(leader));
    assert_eq!(net.server(follower).stats().messages_ignored, ignored + 2);
    let answers: Vec<_> =
        std::iter::from_fn(|| net.server(follower).poll_transmit()).map(|t| (t.to, t.message)).collect();
    assert_eq!(
        answers,
        [
            (stranger, Message::HeartbeatResponse { term, round: 0 }),
            (stranger, Message::VoteResponse { term, granted: false }),
        ]
    );
}

#[test]
fn a_pre_vote_is_granted_only_for_a_later_term_and_a_log_at_least_as_new() {
    let (mut net, _, followers) = elected_three();
    let (follower, asker) = (followers[0], followers[1]);
    let (term, last) = (net.server(follower).term(), net.server(follower).last_index());
    // Long after the leader's last heartbeat, so its lease no longer shields it.
    let later = net.now + Duration::from_secs(10);
    let mut ask = |term, last_index, last_term| {
        let server = net.server(follower);
        server.handle_message(later, asker, Message::PreVote { term, last_index, last_term });
        server.poll_transmit().map(|t| t.message)
    };
    let refused = Some(Message::PreVoteResponse { term, granted: false });
    assert_eq!(ask(term, last + 5, term), refused, "not a later term");
    assert_eq!(ask(term + 1, 0, 0), refused, "a log behind this one");
    assert_eq!(ask(term + 1, last, term), Some(Message::PreVoteResponse { term: term + 1, granted: true }));
    assert_eq!(net.server(follower).term(), term, "a pre-vote raises no term");
}

#[test]
fn a_restarted_server_refuses_votes_for_an_election_timeout_so_a_lease_it_backed_holds() {
    // It may have answered a leader's heartbeat just before going down; that leader may be
    // serving lease reads that count on it.
    let mut raft = Raft::new(Config::new(2, [1, 2, 3], 2), Restored::default(), at(10_000)).unwrap();
    raft.handle_message(at(10_100), 3, Message::PreVote { term: 1, last_index: 0, last_term: 0 });
    raft.handle_message(
        at(10_100),
        3,
        Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false },
    );
    assert_eq!(raft.term(), 0, "a vote request inside the lease does not even raise the term");
    assert_eq!(
        std::iter::from_fn(|| raft.poll_transmit()).collect::<Vec<_>>(),
        [Transmit { to: 3, message: Message::PreVoteResponse { term: 0, granted: false } }]
    );
    raft.handle_message(at(11_000), 3, Message::PreVote { term: 1, last_index: 0, last_term: 0 });
    assert_eq!(
        raft.poll_transmit(),
        Some(Transmit { to: 3, message: Message::PreVoteResponse { term: 1, granted: true } }),
        "after an election timeout it may vote"
    );
}

#[test]
fn a_higher_term_from_a_stray_answer_does_not_free_a_follower_from_its_leader() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    let now = net.now;
    let term = net.server(follower).term();
    net.server(follower).handle_message(
        now,
        other,
        Message::PreVoteResponse { term: term + 1, granted: false },
    );
    assert_eq!(net.server(follower).leader(), None);
    net.server(follower).handle_message(
        now,
        other,
        Message::PreVote { term: term + 2, last_index: 99, last_term: 99 },
    );
    let server = net.server(follower);
    while let Some(persist) = server.poll_persist() {
        server.on_persisted(now, persist.id);
    }
    let answer = std::iter::from_fn(|| server.poll_transmit()).find(|t| t.to == other);
    assert_eq!(answer.map(|t| t.message), Some(Message::PreVoteResponse { term: term + 1, granted: false }));
}

#[test]
fn leadership_moves_to_the_chosen_server_once_its_log_is_up_to_date() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let old = net.leaders()[0];
    let target = (1..=3).find(|&id| id != old).unwrap();
    net.propose(old, cmd("before")).unwrap();
    let now = net.now;
    net.server(old).transfer_leadership(now, target).unwrap();
    assert_eq!(net.propose(old, cmd("during")), Err(ProposeError::Busy("leadership transfer")));
    net.settle();
    assert_eq!(net.leaders(), [target], "handed over within round trips, no timeout waited");
    assert_eq!(net.server(target).term(), net.server(old).term());
    net.propose(target, cmd("after")).unwrap();
    net.run_until(net.now + Duration::from_millis(300));
    for id in 1..=3 {
        assert_eq!(net.commands_applied(id), [cmd("before"), cmd("after")]);
    }
    let now = net.now;
    assert_eq!(net.server(target).transfer_leadership(now, target), Err(ProposeError::NotAVoter(target)));
    assert_eq!(net.server(target).transfer_leadership(now, 9), Err(ProposeError::NotAVoter(9)));
}

/// Three voters (1, 2, 3) bootstrapped, and server 4 started with no membership, to be added.
fn net_with_spare() -> Net {
    let mut net = Net::new(3);
    let spare = Config { voters: BTreeSet::new(), ..Config::new(4, [], 4) };
    net.servers.push(Raft::new(spare, Restored::default(), at(0)).unwrap());
    net.state.push(Vec::new());
    net.applied.push(0);
    net.events.push(Vec::new());
    net
}

#[test]
fn a_server_joins_as_a_learner_catches_up_is_promoted_and_then_votes() {
    let mut net = net_with_spare();
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    net.propose(leader, cmd("a")).unwrap();
    net.settle();
    let now = net.now;
    net.server(leader).change_membership(now, MembershipChange::AddLearner(4)).unwrap();
    assert_eq!(
        net.server(leader).change_membership(now, MembershipChange::Promote(4)),
        Err(ProposeError::Membership("another change is not committed yet"))
    );
    net.run_until(net.now + Duration::from_millis(500));
    assert_eq!(net.commands_applied(4), [cmd("a")], "the learner received the log");
    assert_eq!(net.server(4).membership().learners, BTreeSet::from([4]));
    assert_eq!(net.server(4).role(), Role::Follower, "a learner never stands");
    let now = net.now;
    net.server(leader).change_membership(now, MembershipChange::Promote(4)).unwrap();
    net.run_until(net.now + Duration::from_millis(500));
    assert_eq!(net.server(1).membership().voters, BTreeSet::from([1, 2, 3, 4]));
    // With four voters, the leader and one other are no longer a majority.
    let others: Vec<ServerId> = (1..=4).filter(|&id| id != leader).collect();
    net.isolate(others[0]);
    net.isolate(others[1]);
    net.propose(leader, cmd("b")).unwrap();
    net.run_until(net.now + Duration::from_millis(300));
    assert!(!net.commands_applied(leader).contains(&cmd("b")), "needs 3 of 4");
    net.blocked.clear();
    net.run_until(net.now + Duration::from_millis(500));
    assert!(net.commands_applied(4).contains(&cmd("b")));
}

#[test]
fn a_leader_alone_arms_no_timer_until_a_server_joins() {
    // One voter (1) and a spare (2) with no membership: 1 leads alone.
    let mut net = Net::new(1);
    let spare = Config { voters: BTreeSet::new(), ..Config::new(2, [], 2) };
    net.servers.push(Raft::new(spare, Restored::default(), at(0)).unwrap());
    net.state.push(Vec::new());
    net.applied.push(0);
    net.events.push(Vec::new());
    net.run_until(at(3000));
    assert_eq!(net.leaders(), [1]);
    assert_eq!(net.server(1).poll_timeout(), Instant::NEVER, "no one to heartbeat, no quorum to check");

    net.propose(1, cmd("a")).unwrap();
    net.settle();
    assert_eq!(net.server(1).poll_timeout(), Instant::NEVER, "a write arms nothing either");

    let now = net.now;
    net.server(1).change_membership(now, MembershipChange::AddLearner(2)).unwrap();
    assert!(net.server(1).poll_timeout() <= now + Duration::from_millis(200), "heartbeats start with a peer");
    net.run_until(net.now + Duration::from_millis(500));
    assert_eq!(net.commands_applied(2), [cmd("a")], "the learner received the log");
    let now = net.now;
    net.server(1).change_membership(now, MembershipChange::Promote(2)).unwrap();
    net.run_until(net.now + Duration::from_secs(10));
    assert_eq!(net.leaders(), [1], "the pair keeps its leader: the newcomer was heard in time");
    assert_eq!(net.server(1).membership().voters, BTreeSet::from([1, 2]));
}

#[test]
fn a_removed_leader_steps_down_once_its_removal_commits_and_the_rest_carry_on() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let now = net.now;
    net.server(leader).change_membership(now, MembershipChange::Remove(leader)).unwrap();
    net.run_until(net.now + Duration::from_secs(4));
    assert_ne!(net.server(leader).role(), Role::Leader);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], leader);
    let remaining: BTreeSet<ServerId> = (1..=3).filter(|&id| id != leader).collect();
    assert_eq!(net.server(leaders[0]).membership().voters, remaining);
    net.propose(leaders[0], cmd("after")).unwrap();
    net.run_until(net.now + Duration::from_millis(300));
    for &id in &remaining {
        assert_eq!(net.commands_applied(id), [cmd("after")]);
    }
    // The removed server never stands again.
    net.run_until(net.now + Duration::from_secs(10));
    assert_eq!(net.leaders(), leaders);
}

#[test]
fn membership_changes_that_do_not_apply_are_refused() {
    let mut net = Net::new(1);
    net.run_until(at(3000));
    let now = net.now;
    let raft = net.server(1);
    assert_eq!(
        raft.change_membership(now, MembershipChange::Promote(2)),
        Err(ProposeError::Membership("not a learner"))
    );
    assert_eq!(
        raft.change_membership(now, MembershipChange::Remove(2)),
        Err(ProposeError::Membership("not a member"))
    );
    assert_eq!(
        raft.change_membership(now, MembershipChange::Remove(1)),
        Err(ProposeError::Membership("cannot remove the last voter"))
    );
    assert_eq!(
        raft.change_membership(now, MembershipChange::AddLearner(1)),
        Err(ProposeError::Membership("already a member"))
    );
}

#[test]
fn a_learner_told_to_stand_does_not() {
    let mut learner =
        Raft::new(Config { voters: BTreeSet::new(), ..Config::new(4, [], 4) }, Restored::default(), at(0))
            .unwrap();
    learner.handle_message(at(10), 1, Message::TimeoutNow { term: 1 });
    assert_eq!(learner.role(), Role::Follower);
    assert_eq!(learner.stats().elections, 0);
    learner.handle_timeout(learner.poll_timeout());
    assert_eq!(learner.role(), Role::Follower, "nor does its election timer make it stand");
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_a_snapshot_in_chunks() {
    let mut net = Net::with_config(3, |config| {
        config.snapshot_threshold = 4;
        config.snapshot_trailing = 1;
        config.snapshot_chunk_bytes = 5;
    });
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let behind = if leader == 3 { 2 } else { 3 };
    net.isolate(behind);
    let commands: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("c{i}"))).collect();
    for command in &commands {
        net.propose(leader, command.clone()).unwrap();
        net.settle();
    }
    assert!(net.server(leader).snapshot_index() >= 8, "the leader snapshotted");
    assert_eq!(net.server(leader).entry(1), None, "and compacted its log");
    net.blocked.clear();
    net.run_until(at(4000));
    assert_eq!(net.commands_applied(behind), commands, "the snapshot and the log after it");
    let stats = net.server(behind).stats();
    assert_eq!(stats.snapshots_installed, 1);
    // The snapshot at 8 holds c0..c6: 20 bytes, four chunks of 5.
    assert_eq!(net.server(leader).snapshot_index(), 8);
    assert_eq!(net.server(leader).stats().snapshot_chunks_sent, 4);
    // Replication goes on from the log afterwards.
    net.propose(leader, cmd("after")).unwrap();
    net.run_until(at(4500));
    assert_eq!(net.commands_applied(behind).last(), Some(&cmd("after")));
}

/// Applies persists the way a disk would: the snapshot first, then the log writes.
fn write(restored: &mut Restored, persist: Persist) {
    if let Some(hard) = persist.hard_state {
        restored.hard_state = hard;
    }
    if let Some(snapshot) = persist.snapshot {
        restored.snapshot = Some(snapshot);
    }
    if let Some(from) = persist.truncate_from {
        restored.entries.retain(|e| e.index < from);
    }
    restored.entries.extend(persist.entries);
}

#[test]
fn a_server_restarts_from_its_snapshot_and_the_entries_after_it() {
    let mut config = Config::new(1, [1], 7);
    config.snapshot_threshold = 3;
    config.snapshot_trailing = 1;
    let mut raft = Raft::new(config.clone(), Restored::default(), at(0)).unwrap();
    let mut disk = Restored::default();
    let now = raft.poll_timeout();
    raft.handle_timeout(now);
    for text in ["a", "b", "c", "d"] {
        raft.propose(now, cmd(text)).unwrap();
    }
    while let Some(persist) = raft.poll_persist() {
        raft.on_persisted(now, persist.id);
        write(&mut disk, persist);
    }
    // Entries 1..=5 (the no-op, a, b, c, d); the snapshot is asked for after the third.
    let mut applied = Vec::new();
    while let Some(apply) = raft.poll_apply() {
        applied.push(apply);
    }
    assert_eq!(applied.len(), 5);
    assert_eq!(raft.poll_event(), Some(Event::Role { role: Role::Leader, term: 1, leader: Some(1) }));
    assert_eq!(raft.poll_event(), Some(Event::SnapshotDue { index: 3 }));
    assert_eq!(raft.snapshot_taken(now, 4, cmd("a b c")), Ok(()));
    assert_eq!(raft.snapshot_taken(now, 4, cmd("a b c")), Err(SnapshotError::Stale { index: 4, held: 4 }));
    assert_eq!(raft.entry(3), None, "compacted up to one trailing entry");
    assert_eq!(raft.entry(4).map(|e| e.index), Some(4));
    let persist = raft.poll_persist().unwrap();
    let meta = SnapshotMeta {
        index: 4,
        term: 1,
        membership: Membership { voters: [1].into(), learners: [].into() },
    };
    assert_eq!(persist.snapshot.as_ref().map(|s| &s.meta), Some(&meta));
    write(&mut disk, persist);
    // The driver dropped the segments the snapshot covers: the log on disk starts at 4.
    disk.entries.retain(|e| e.index >= 4);

    let mut raft = Raft::new(config.clone(), disk.clone(), at(10_000)).unwrap();
    assert_eq!((raft.commit_index(), raft.snapshot_index(), raft.last_index()), (4, 4, 5));
    let Some(Apply::Snapshot(snapshot)) = raft.poll_apply() else { panic!("the snapshot comes first") };
    assert_eq!((snapshot.meta, snapshot.data), (meta, cmd("a b c")));
    assert_eq!(raft.poll_apply(), None, "entry 5 waits to be committed again");
    let now = raft.poll_timeout();
    raft.handle_timeout(now);
    while let Some(persist) = raft.poll_persist() {
        raft.on_persisted(now, persist.id);
    }
    assert_eq!(raft.poll_apply(), Some(Apply::Entry(Entry::command(5, 1, cmd("d")))));

    // A log that stops short of the snapshot is dropped; one with a gap is refused.
    let short = Restored { entries: vec![Entry::command(1, 1, cmd("a"))], ..disk.clone() };
    let mut dropped = Raft::new(config.clone(), short, at(0)).unwrap();
    assert_eq!(dropped.last_index(), 4);
    let persist = dropped.poll_persist().expect("the disk drops it too");
    assert_eq!((persist.truncate_from, persist.entries.len()), (Some(1), 0));
    let gap = Restored { entries: vec![Entry::command(6, 1, cmd("e"))], ..disk.clone() };
    assert!(matches!(Raft::new(config.clone(), gap, at(0)), Err(ConfigError::Restore(_))));
    let no_snapshot = Restored { snapshot: None, ..disk };
    assert!(matches!(Raft::new(config, no_snapshot, at(0)), Err(ConfigError::Restore(_))));
}

#[test]
fn impossible_messages_from_a_confused_or_forged_peer_are_ignored_not_asserted_on() {
    let mut net = Net::new(3);
    net.run_until(at(3000));
    let leader = net.leaders()[0];
    let other = if leader == 1 { 2 } else { 1 };
    let (now, term) = (net.now, net.server(leader).term());
    let ignored = net.server(leader).stats().messages_ignored;
    let ignored_by_other = net.server(other).stats().messages_ignored;
    // A second "leader" of this term, and an append whose entries skip an index.
    net.server(leader).handle_message(now, other, Message::Heartbeat { term, commit: 0, round: 1, acked: 0 });
    let gap = vec![Entry::command(3, term, cmd("a")), Entry::command(5, term, cmd("b"))];
    let append = Message::AppendEntries { term, prev_index: 2, prev_term: term, entries: gap, commit: 0 };
    net.server(other).handle_message(now, leader, append);
    let snapshot = Message::InstallSnapshot {
        term,
        meta: SnapshotMeta { index: u64::MAX, term, membership: Membership::default() },
        offset: 0,
        data: cmd("x"),
        done: true,
    };
    net.server(other).handle_message(now, leader, snapshot);
    // Answers from a server the leader does not track (never a member, or removed since).
    let stranger: ServerId = 9;
    let last = net.server(leader).last_index();
    let answers = [
        Message::AppendResponse {
            term,
            prev_index: last,
            result: AppendResult::Accepted { match_index: last },
        },
        Message::HeartbeatResponse { term, round: 1 },
        Message::SnapshotResponse { term, index: last, received: 1, installed: true },
    ];
    for answer in answers {
        net.server(leader).handle_message(now, stranger, answer);
    }
    assert!(!net.server(leader).matched().contains_key(&stranger));
    assert_eq!(net.server(leader).role(), Role::Leader);
    // The second "leader"'s heartbeat, and the stranger's three answers.
    assert_eq!(net.server(leader).stats().messages_ignored, ignored + 4);
    assert_eq!(net.server(other).stats().messages_ignored, ignored_by_other + 2);
    assert_eq!(net.server(other).last_index(), net.server(leader).last_index(), "its log is untouched");
    assert_eq!(net.server(other).snapshot_index(), 0);
}

#[test]
fn a_snapshot_from_a_new_leader_never_continues_chunks_of_another() {
    let mut raft = Raft::new(Config::new(2, 1..=3, 2), Restored::default(), at(0)).unwrap();
    let meta = SnapshotMeta {
        index: 10,
        term: 1,
        membership: Membership { voters: [1, 2, 3].into(), learners: [].into() },
    };
    let chunk = |term, offset, data: &'static str, done| Message::InstallSnapshot {
        term,
        meta: meta.clone(),
        offset,
        data: cmd(data),
        done,
    };
    raft.handle_message(at(1), 1, chunk(2, 0, "abc", false));
    // Leader 3 of term 3 has a snapshot with the same meta but other bytes: it must start over.
    raft.handle_message(at(2), 3, chunk(3, 3, "XYZ", true));
    let answers: Vec<Message> = std::iter::from_fn(|| raft.poll_transmit()).map(|t| t.message).collect();
    assert_eq!(
        answers.last(),
        Some(&Message::SnapshotResponse { term: 3, index: 10, received: 0, installed: false })
    );
    raft.handle_message(at(3), 3, chunk(3, 0, "XYZXYZ", true));
    while let Some(persist) = raft.poll_persist() {
        raft.on_persisted(at(3), persist.id);
    }
    let Some(Apply::Snapshot(snapshot)) = raft.poll_apply() else { panic!("installed") };
    assert_eq!(snapshot.data, cmd("XYZXYZ"));
}

#[test]
fn a_restart_with_a_snapshot_newer_than_its_hard_state_takes_the_snapshot_term() {
    let meta = SnapshotMeta {
        index: 10,
        term: 4,
        membership: Membership { voters: [1, 2, 3].into(), learners: [].into() },
    };
    let restored = Restored {
        hard_state: HardState { term: 2, vote: Some(1) },
        snapshot: Some(Snapshot { meta, data: cmd("state") }),
        entries: Vec::new(),
    };
    let raft = Raft::new(Config::new(2, 1..=3, 2), restored, at(0)).unwrap();
    assert_eq!(raft.term(), 4);
    assert_eq!(raft.commit_index(), 10);
}
