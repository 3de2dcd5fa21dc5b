//! The gossip broadcast queue (memberlist's `TransmitLimitedQueue`).
//!
//! Every state change a node learns is queued here and piggybacked on outgoing datagrams until it
//! has been sent `retransmit_mult × ceil(log10(n + 1))` times: enough for epidemic spread to reach
//! everyone with high probability, without flooding. Messages sent fewest times go first, newest
//! first among equals. A newer message about a node replaces the queued one, so the queue holds
//! at most one message per member, plus one per recent user event.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use bytes::Bytes;

use crate::wire::DatagramBuilder;

/// What a queued message is about: a newer message about the same subject replaces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subject {
    /// A member's state.
    Node(String),
    /// One user event, by its Lamport time and its place among events of that time.
    Event(u64, usize),
    /// One query, by its Lamport time and its place among queries of that time.
    Query(u64, usize),
}

/// Queued broadcasts, keyed for "fewest transmits, then newest" order.
#[derive(Debug, Default)]
pub(crate) struct BroadcastQueue {
    /// (class, transmits so far, newest first) → (what the message is about, encoded entry).
    /// Membership messages (class 0) go before events and queries (class 1), so that a flood of
    /// events cannot hold back a refutation.
    queue: BTreeMap<Key, (Subject, Bytes)>,
    /// subject → its message's key in `queue`.
    by_node: BTreeMap<Subject, Key>,
    next_id: u64,
}

/// Orders the queue: class, then fewest transmits, then newest.
type Key = (u8, u32, Reverse<u64>);

impl BroadcastQueue {
    /// Queues `entry` (an encoded message about `node`), replacing any older message about it.
    pub(crate) fn push(&mut self, node: &str, entry: Bytes) {
        self.push_subject(Subject::Node(node.to_owned()), entry);
    }

    /// Queues `entry` about `subject`, replacing any older message about it.
    pub(crate) fn push_subject(&mut self, subject: Subject, entry: Bytes) {
        if let Some(key) = self.by_node.remove(&subject) {
            self.queue.remove(&key).expect("by_node and queue agree");
        }
        self.next_id += 1;
        let class = u8::from(!matches!(subject, Subject::Node(_)));
        let key = (class, 0, Reverse(self.next_id));
        self.by_node.insert(subject.clone(), key);
        self.queue.insert(key, (subject, entry));
    }

    /// Fills `datagram` with as many queued entries as fit, counting a transmit for each and
    /// dropping those that reach `transmit_limit`. Returns how many were added.
    pub(crate) fn fill(&mut self, datagram: &mut DatagramBuilder, transmit_limit: u32) -> usize {
        assert!(transmit_limit >= 1);
        let mut sent = Vec::new();
        for (key, (_, entry)) in &self.queue {
            if datagram.remaining() < ENTRY_BYTES_MIN {
                break;
            }
            if datagram.push_entry(entry) {
                sent.push(*key);
            }
        }
        for key in &sent {
            let (node, entry) = self.queue.remove(key).expect("key from the queue");
            let transmits = key.1 + 1;
            if transmits >= transmit_limit {
                self.by_node.remove(&node).expect("by_node and queue agree");
            } else {
                let requeued = (key.0, transmits, key.2);
                self.by_node.insert(node.clone(), requeued);
                self.queue.insert(requeued, (node, entry));
            }
        }
        sent.len()
    }

    /// Drops the message about `subject`, if queued.
    pub(crate) fn remove(&mut self, subject: &Subject) {
        if let Some(key) = self.by_node.remove(subject) {
            self.queue.remove(&key).expect("by_node and queue agree");
        }
    }

    /// Whether a message about `node` is still queued.
    pub(crate) fn contains(&self, node: &str) -> bool {
        self.by_node.contains_key(&Subject::Node(node.to_owned()))
    }

    /// Queued messages.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Checks that the two indexes describe the same messages.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.queue.len(), self.by_node.len());
        for (node, key) in &self.by_node {
            assert_eq!(&self.queue[key].0, node);
        }
    }
}

/// The retransmit limit for a cluster of `nodes`: `mult × ceil(log10(nodes + 1))`.
pub(crate) fn retransmit_limit(mult: u32, nodes: usize) -> u32 {
    (mult * log10_ceil(nodes + 1)).max(1)
}

/// `⌈log10 n⌉` in integers (so every platform agrees exactly, even at powers of ten).
pub(crate) fn log10_ceil(n: usize) -> u32 {
    let mut digits = 0;
    let mut power = 1usize;
    while power < n {
        power = power.saturating_mul(10);
        digits += 1;
    }
    digits
}

/// The smallest entry (an ack: kind, length, seq); below this much room, stop looking.
const ENTRY_BYTES_MIN: usize = 3 + 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DATAGRAM_BYTES_MAX;
    use crate::wire::{decode_datagram, Message};

    fn entry(seq: u32) -> Bytes {
        Message::Ack { seq }.encode_entry()
    }

    fn sent(queue: &mut BroadcastQueue, budget: usize, limit: u32) -> Vec<Message> {
        let mut datagram = DatagramBuilder::new(budget);
        datagram.push_entry(&Message::Nack { seq: 0 }.encode_entry());
        queue.fill(&mut datagram, limit);
        queue.check_invariants();
        decode_datagram(&datagram.finish()).unwrap().split_off(1)
    }

    #[test]
    fn retransmit_limit_follows_memberlist() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(4, 1000), 16);
    }

    #[test]
    fn fewest_transmits_first_newest_first_and_dropped_at_the_limit() {
        let mut queue = BroadcastQueue::default();
        queue.push("a", entry(1));
        queue.push("b", entry(2));
        let ack = |seq| Message::Ack { seq };
        assert_eq!(sent(&mut queue, DATAGRAM_BYTES_MAX, 2), vec![ack(2), ack(1)]);
        queue.push("c", entry(3));
        assert_eq!(sent(&mut queue, DATAGRAM_BYTES_MAX, 2), vec![ack(3), ack(2), ack(1)]);
        assert_eq!(queue.len(), 1, "a and b reached the limit");
        assert!(queue.contains("c"));
    }

    #[test]
    fn a_newer_message_about_a_node_replaces_the_older() {
        let mut queue = BroadcastQueue::default();
        queue.push("a", entry(1));
        queue.push("a", entry(2));
        assert_eq!(queue.len(), 1);
        assert_eq!(sent(&mut queue, DATAGRAM_BYTES_MAX, 4), vec![Message::Ack { seq: 2 }]);
    }

    #[test]
    fn entries_that_do_not_fit_wait_for_the_next_datagram() {
        let mut queue = BroadcastQueue::default();
        for seq in 0..10 {
            queue.push(&format!("n{seq}"), entry(seq));
        }
        // Version byte, the nack (7 bytes), and room for exactly three more entries of 7 bytes.
        assert_eq!(sent(&mut queue, 1 + 7 + 3 * 7, 4).len(), 3);
        assert_eq!(queue.len(), 10, "nothing reached the limit yet");
        assert_eq!(sent(&mut queue, DATAGRAM_BYTES_MAX, 4).len(), 10);
    }
}
