//! Ping/ack liveness probing.
//!
//! The smallest real protocol that exercises the whole drive contract: timers, retries, both
//! channels, persistence before sending, and restarts. Every `ping_interval` the node pings each
//! peer that has no probe in flight. A probe waits `ping_timeout` for the matching ack and is
//! retried up to `ping_attempts_max` times in all; the last attempt goes over the reliable stream
//! channel, the way memberlist falls back to a TCP ping when UDP is lost. An ack marks the peer
//! reachable; running out of attempts marks it unreachable.
//!
//! Every message carries the sender's incarnation, which grows with each restart of the sender
//! and is made durable before the first message of that incarnation leaves (see
//! [`crate::Node`]). A receiver therefore sees a restart as a higher incarnation and ignores
//! late messages from an earlier life.
//!
//! SWIM (SWIM §4, Lifeguard) grows out of this module: the probe round becomes randomized
//! round-robin with indirect probes, and "unreachable" becomes suspicion.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::limits::PEERS_MAX;
use crate::node::{Channel, CommandError, Event, Transmit};
use crate::wire::{Body, Message};
use crate::{Instant, Rng};

/// Timing of the ping protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often each peer is probed (memberlist's `ProbeInterval`, 1 s on a LAN).
    pub ping_interval: Duration,
    /// How long one attempt waits for its ack (memberlist's `ProbeTimeout`, 500 ms on a LAN).
    pub ping_timeout: Duration,
    /// Attempts per probe, the first included; the last goes over the stream channel.
    pub ping_attempts_max: u8,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_millis(500),
            ping_attempts_max: 3,
        }
    }
}

impl Config {
    /// Checks the relations the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ping_interval < PING_INTERVAL_MIN {
            return Err(ConfigError::IntervalTooShort {
                interval: self.ping_interval,
                min: PING_INTERVAL_MIN,
            });
        }
        if self.ping_timeout.is_zero() || self.ping_timeout > self.ping_interval {
            return Err(ConfigError::TimeoutOutOfRange {
                timeout: self.ping_timeout,
                interval: self.ping_interval,
            });
        }
        if !(1..=PING_ATTEMPTS_MAX).contains(&self.ping_attempts_max) {
            return Err(ConfigError::AttemptsOutOfRange {
                attempts: self.ping_attempts_max,
                max: PING_ATTEMPTS_MAX,
            });
        }
        Ok(())
    }
}

/// A configuration the protocol cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Probing faster than this floods the network without detecting failures any sooner.
    #[error("ping_interval {interval:?} is below the minimum of {min:?}")]
    IntervalTooShort {
        /// The configured interval.
        interval: Duration,
        /// The smallest allowed.
        min: Duration,
    },
    /// A probe must time out within its round, or probes of successive rounds would overlap.
    #[error("ping_timeout {timeout:?} must be positive and at most ping_interval {interval:?}")]
    TimeoutOutOfRange {
        /// The configured timeout.
        timeout: Duration,
        /// The configured interval.
        interval: Duration,
    },
    /// Attempts must be at least one and bounded.
    #[error("ping_attempts_max {attempts} must be between 1 and {max}")]
    AttemptsOutOfRange {
        /// The configured count.
        attempts: u8,
        /// The largest allowed.
        max: u8,
    },
}

/// What this node currently believes about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Not probed to completion yet.
    Unknown,
    /// The last probe was acknowledged.
    Reachable,
    /// The last probe ran out of attempts.
    Unreachable,
}

/// Counters of what the protocol saw; for metrics and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ping attempts sent, retries included.
    pub pings_sent: u64,
    /// Acks sent in answer to pings.
    pub acks_sent: u64,
    /// Acks that matched no probe in flight (late, duplicated, or forged).
    pub acks_unmatched: u64,
    /// Messages dropped because they came from an earlier incarnation of their sender.
    pub messages_stale_incarnation: u64,
    /// Messages dropped because they claimed to come from this node.
    pub messages_from_self: u64,
    /// Senders not tracked because [`PEERS_MAX`] peers are known already.
    pub peers_refused_full: u64,
}

/// The ping protocol's state machine.
#[derive(Debug)]
pub(crate) struct Pinger {
    config: Config,
    me: SocketAddr,
    incarnation: u64,
    peers: BTreeMap<SocketAddr, Peer>,
    /// Probe deadlines, ordered by time and then address so that simultaneous deadlines fire in
    /// the same order on every run.
    deadlines: BTreeSet<(Instant, SocketAddr)>,
    round_next: Instant,
    seq_next: u32,
    rng: Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    status: Status,
    /// Highest incarnation heard from the peer; 0 before the first message.
    incarnation: u64,
    probe: Option<Probe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    seq: u32,
    /// 1 for the first attempt.
    attempt: u8,
    deadline: Instant,
}

impl Pinger {
    /// A pinger for the node advertised at `me`, in its incarnation `incarnation`. The first
    /// round starts at a random point of the first interval so that nodes started together do
    /// not probe in lockstep.
    pub(crate) fn new(
        config: Config,
        me: SocketAddr,
        incarnation: u64,
        mut rng: Rng,
        now: Instant,
    ) -> Pinger {
        assert!(incarnation >= 1, "incarnations start at 1");
        let stagger = rng.duration_between(Duration::ZERO, config.ping_interval);
        Pinger {
            me,
            incarnation,
            peers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            round_next: now + stagger,
            seq_next: 0,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Starts tracking `peer`; it is probed from the next round on.
    pub(crate) fn add_peer(&mut self, peer: SocketAddr) -> Result<(), CommandError> {
        if peer == self.me {
            return Err(CommandError::IsSelf { peer });
        }
        if self.peers.contains_key(&peer) {
            return Ok(());
        }
        if self.peers.len() >= PEERS_MAX {
            return Err(CommandError::PeersFull { max: PEERS_MAX });
        }
        self.peers.insert(
            peer,
            Peer {
                status: Status::Unknown,
                incarnation: 0,
                probe: None,
            },
        );
        Ok(())
    }

    /// Stops tracking `peer` and cancels its probe.
    pub(crate) fn remove_peer(&mut self, peer: SocketAddr) -> Result<(), CommandError> {
        let removed = self
            .peers
            .remove(&peer)
            .ok_or(CommandError::UnknownPeer { peer })?;
        if let Some(probe) = removed.probe {
            let was_scheduled = self.deadlines.remove(&(probe.deadline, peer));
            assert!(was_scheduled, "probe of {peer} had no deadline");
        }
        Ok(())
    }

    pub(crate) fn handle_message(&mut self, channel: Channel, message: Message) {
        let sender = message.sender;
        if sender == self.me {
            self.stats.messages_from_self += 1;
            return;
        }
        if !self.peers.contains_key(&sender) {
            if self.peers.len() >= PEERS_MAX {
                self.stats.peers_refused_full += 1;
                return;
            }
            self.peers.insert(
                sender,
                Peer {
                    status: Status::Unknown,
                    incarnation: 0,
                    probe: None,
                },
            );
            self.events
                .push_back(Event::PeerDiscovered { peer: sender });
        }
        let peer = self.peers.get_mut(&sender).expect("inserted above");
        if message.incarnation < peer.incarnation {
            self.stats.messages_stale_incarnation += 1;
            return;
        }
        if message.incarnation > peer.incarnation {
            if peer.incarnation != 0 {
                self.events.push_back(Event::PeerRestarted {
                    peer: sender,
                    incarnation: message.incarnation,
                });
            }
            peer.incarnation = message.incarnation;
        }
        match message.body {
            Body::Ping { seq } => {
                let ack = Message {
                    sender: self.me,
                    incarnation: self.incarnation,
                    body: Body::Ack { seq },
                };
                self.transmits.push_back(Transmit {
                    dst: sender,
                    channel,
                    payload: ack.encode(),
                });
                self.stats.acks_sent += 1;
            }
            Body::Ack { seq } => match peer.probe {
                Some(probe) if probe.seq == seq => {
                    let was_scheduled = self.deadlines.remove(&(probe.deadline, sender));
                    assert!(was_scheduled, "probe of {sender} had no deadline");
                    peer.probe = None;
                    if peer.status != Status::Reachable {
                        peer.status = Status::Reachable;
                        self.events.push_back(Event::PeerReachable {
                            peer: sender,
                            incarnation: peer.incarnation,
                        });
                    }
                }
                _ => self.stats.acks_unmatched += 1,
            },
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, peer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.handle_timeout_probe(now, peer);
        }
        if self.round_next <= now {
            self.round_next = now + self.config.ping_interval;
            let mut idle: Vec<SocketAddr> = self
                .peers
                .iter()
                .filter(|(_, p)| p.probe.is_none())
                .map(|(a, _)| *a)
                .collect();
            self.rng.shuffle(&mut idle);
            for peer in idle {
                let seq = self.seq_next;
                self.seq_next = self.seq_next.wrapping_add(1);
                self.send_attempt(
                    now,
                    peer,
                    Probe {
                        seq,
                        attempt: 1,
                        deadline: now,
                    },
                );
            }
        }
    }

    fn handle_timeout_probe(&mut self, now: Instant, peer: SocketAddr) {
        let state = self
            .peers
            .get_mut(&peer)
            .expect("a deadline belongs to a known peer");
        let probe = state
            .probe
            .take()
            .expect("a deadline belongs to a probe in flight");
        if probe.attempt < self.config.ping_attempts_max {
            self.send_attempt(
                now,
                peer,
                Probe {
                    attempt: probe.attempt + 1,
                    ..probe
                },
            );
        } else if state.status != Status::Unreachable {
            state.status = Status::Unreachable;
            self.events.push_back(Event::PeerUnreachable { peer });
        }
    }

    /// Sends attempt `probe.attempt` of a probe and schedules its deadline.
    fn send_attempt(&mut self, now: Instant, peer: SocketAddr, probe: Probe) {
        let last = probe.attempt == self.config.ping_attempts_max;
        let channel = if last && self.config.ping_attempts_max > 1 {
            Channel::Stream
        } else {
            Channel::Datagram
        };
        let deadline = now + self.config.ping_timeout;
        let state = self
            .peers
            .get_mut(&peer)
            .expect("probes target known peers");
        assert!(state.probe.is_none(), "one probe per peer at a time");
        state.probe = Some(Probe { deadline, ..probe });
        let inserted = self.deadlines.insert((deadline, peer));
        assert!(inserted, "deadline of {peer} scheduled twice");
        let ping = Message {
            sender: self.me,
            incarnation: self.incarnation,
            body: Body::Ping { seq: probe.seq },
        };
        self.transmits.push_back(Transmit {
            dst: peer,
            channel,
            payload: ping.encode(),
        });
        self.stats.pings_sent += 1;
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which [`Pinger::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Instant {
        match self.deadlines.first() {
            Some(&(deadline, _)) => deadline.min(self.round_next),
            None => self.round_next,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = (SocketAddr, Status, u64)> + '_ {
        self.peers
            .iter()
            .map(|(addr, peer)| (*addr, peer.status, peer.incarnation))
    }

    /// Checks that probes and deadlines describe each other exactly.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn check_invariants(&self) {
        assert!(self.incarnation >= 1);
        assert!(
            !self.peers.contains_key(&self.me),
            "a node never tracks itself"
        );
        assert!(self.peers.len() <= PEERS_MAX);
        let in_flight = self.peers.values().filter(|p| p.probe.is_some()).count();
        assert_eq!(
            in_flight,
            self.deadlines.len(),
            "one deadline per probe in flight"
        );
        for &(deadline, addr) in &self.deadlines {
            let probe = self.peers[&addr].probe.expect("deadline without a probe");
            assert_eq!(probe.deadline, deadline);
            assert!((1..=self.config.ping_attempts_max).contains(&probe.attempt));
        }
    }
}

/// The floor on `ping_interval`.
const PING_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// The ceiling on `ping_attempts_max`: beyond a handful, retries only delay the verdict.
const PING_ATTEMPTS_MAX: u8 = 8;

#[cfg(test)]
mod tests;
