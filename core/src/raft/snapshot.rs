//! Snapshots (§7): the application's snapshot taken and the log compacted behind it, a
//! leader sending its snapshot to a follower behind the log's base a chunk at a time
//! (stop-and-wait), and the follower assembling and installing it.

use bytes::Bytes;

use super::leader::{Lead, Leader};
use super::log::Log;
use super::membership::latest_membership;
use super::shared::Shared;
use super::{
    Index, Message, Raft, ServerId, Snapshot, SnapshotError, SnapshotMeta, Term, SNAPSHOT_BYTES_MAX,
};
use crate::Instant;

/// A snapshot on its way to one follower, a chunk at a time.
#[derive(Debug, Clone)]
pub(super) struct SnapshotSend {
    /// The snapshot being sent. A newer one taken meanwhile waits for this transfer to finish:
    /// restarting at every snapshot could starve a follower that needs longer than the
    /// threshold's worth of writes to receive one.
    pub(super) snapshot: Snapshot,
    /// The bytes the follower acknowledged: the next chunk starts here.
    pub(super) offset: u64,
    /// When the chunk now out left, if one is.
    pub(super) sent_at: Option<Instant>,
}

/// A snapshot a follower is assembling from the leader's chunks.
#[derive(Debug)]
pub(super) struct Incoming {
    meta: SnapshotMeta,
    /// The term of the leader sending it: another leader's snapshot at the same index may hold
    /// other bytes (an application's encoding need not be canonical), so its chunks never
    /// continue this one.
    term: Term,
    data: bytes::BytesMut,
}

impl Raft {
    /// Takes the application's snapshot of its state through `index` (an applied entry, usually
    /// after [`super::Event::SnapshotDue`]): it is persisted, sent to followers too far behind,
    /// and the log is compacted up to `snapshot_trailing` entries before it.
    pub fn snapshot_taken(&mut self, now: Instant, index: Index, data: Bytes) -> Result<(), SnapshotError> {
        let shared = &mut self.shared;
        shared.clock.advance(now);
        assert!(index <= shared.applied, "a snapshot covers only applied entries");
        let held = shared.snapshot_index();
        if index <= held {
            return Err(SnapshotError::Stale { index, held });
        }
        let term = shared.log.term_at(index).expect("entries after the snapshot are held");
        let membership = match shared.log.membership_at(index) {
            Some((membership, _)) => membership,
            None => latest_membership(&Log::default(), shared.snapshot.as_ref(), &shared.config).0,
        };
        let snapshot = Snapshot { meta: SnapshotMeta { index, term, membership }, data };
        let compact_to = index.saturating_sub(shared.config.snapshot_trailing);
        if compact_to > shared.log.base().0 {
            shared.log.compact_through(compact_to);
        }
        shared.snapshot = Some(snapshot.clone());
        shared.snapshot_asked = false;
        shared.pending_persist().snapshot = Some(snapshot);
        self.finish_step();
        Ok(())
    }
}

impl Shared {
    /// A chunk of the leader's snapshot. Chunks are taken in order only; anything else is
    /// answered with where the transfer stands, so the leader resumes from there.
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        from: ServerId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let term = self.hard.term;
        let index = meta.index;
        if index <= self.commit {
            // Everything it covers is committed here already (an earlier transfer finished, or
            // appends overtook it): the log serves from here.
            self.incoming = None;
            let message = Message::SnapshotResponse { term, index, received: offset, installed: true };
            return self.send(from, message);
        }
        let mut incoming = match self.incoming.take() {
            Some(incoming) if incoming.meta == meta && incoming.term == term => incoming,
            _ => Incoming { meta, term, data: bytes::BytesMut::new() },
        };
        let received = incoming.data.len() as u64;
        let size = offset.saturating_add(data.len() as u64);
        if offset != received || size > SNAPSHOT_BYTES_MAX {
            self.stats.messages_ignored += 1;
            if received > 0 {
                self.incoming = Some(incoming);
            }
            // Progress only: nothing here needs to be durable first.
            let message = Message::SnapshotResponse { term, index, received, installed: false };
            return self.send_now(from, message);
        }
        incoming.data.extend_from_slice(&data);
        if !done {
            let message = Message::SnapshotResponse { term, index, received: size, installed: false };
            self.incoming = Some(incoming);
            return self.send_now(from, message);
        }
        self.install_snapshot(Snapshot { meta: incoming.meta, data: incoming.data.freeze() });
        // Held until the snapshot is durable: the leader counts this server as holding it.
        self.send(from, Message::SnapshotResponse { term, index, received: size, installed: true });
    }

    /// Replaces the log's committed prefix with a leader's snapshot (§7): a log that holds the
    /// snapshot's last entry keeps what follows it; any other log is dropped whole.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        assert!(meta.index > self.commit, "only a snapshot past the commit index is installed");
        self.stats.snapshots_installed += 1;
        if self.log.term_at(meta.index) == Some(meta.term) {
            self.log.compact_through(meta.index);
        } else {
            self.log.reset((meta.index, meta.term));
            // Writes in flight may extend the log the snapshot replaces; the truncation below
            // drops them with the rest, so nothing past the snapshot counts as durable.
            self.durable_index = self.durable_index.min(meta.index);
            for (_, end) in self.persist_log_ends.iter_mut() {
                *end = (*end).min(meta.index);
            }
            let pending = self.pending_persist();
            pending.truncate_from = Some(1);
            pending.entries.clear();
        }
        self.commit = meta.index;
        self.applied = meta.index;
        (self.membership, self.membership_index) =
            latest_membership(&self.log, Some(&snapshot), &self.config);
        self.incoming = None;
        self.snapshot_asked = false;
        self.snapshot = Some(snapshot.clone());
        self.snapshot_to_apply = Some(snapshot.clone());
        self.pending_persist().snapshot = Some(snapshot);
    }
}

impl Leader {
    pub(super) fn handle_snapshot_response(
        &mut self,
        now: Instant,
        shared: &mut Shared,
        from: ServerId,
        index: Index,
        received: u64,
        installed: bool,
    ) -> Lead {
        let progress = self.progress.get_mut(&from).expect("checked by Raft::leader_tracking");
        progress.active = true;
        if installed {
            if index <= progress.match_index || index > shared.log.last_index() {
                shared.stats.messages_ignored += 1;
                return Lead::On;
            }
            progress.match_index = index;
            progress.next_index = index + 1;
            progress.snapshot = None;
            progress.probe();
            if self.maybe_commit(shared) == Lead::StepDown {
                return Lead::StepDown;
            }
            self.maybe_hand_over(shared, from);
        } else {
            let current = progress.snapshot.as_mut().filter(|send| send.snapshot.meta.index == index);
            match current {
                // The follower stands where the chunk out started: an answer to a duplicate, or
                // a refusal. The chunk out (or its resend after two heartbeats) will do.
                Some(send) if received == send.offset && send.sent_at.is_some() => {
                    shared.stats.messages_ignored += 1;
                    return Lead::On;
                }
                Some(send) if received <= send.snapshot.data.len() as u64 => {
                    send.offset = received;
                    send.sent_at = None;
                }
                _ => {
                    shared.stats.messages_ignored += 1;
                    return Lead::On;
                }
            }
        }
        self.replicate(now, shared, from);
        Lead::On
    }

    /// Sends `peer` the next chunk of the snapshot, unless one is out.
    pub(super) fn send_snapshot_chunk(&mut self, now: Instant, shared: &mut Shared, peer: ServerId) {
        let latest = shared.snapshot.as_ref().expect("the log is compacted only behind a snapshot");
        let progress = self.progress.get_mut(&peer).expect("a leader tracks every member");
        if progress.snapshot.is_none() {
            progress.snapshot = Some(SnapshotSend { snapshot: latest.clone(), offset: 0, sent_at: None });
            progress.probe();
        }
        let send = progress.snapshot.as_mut().expect("set above");
        if send.sent_at.is_some() {
            return;
        }
        if send.offset == 0 && send.snapshot.meta.index < latest.meta.index {
            // Nothing of it has arrived (the follower was down, say): send the newest instead.
            send.snapshot = latest.clone();
        }
        send.sent_at = Some(now);
        let snapshot = &send.snapshot;
        let len = snapshot.data.len();
        let start = usize::try_from(send.offset).expect("within the data, checked on the answer");
        let end = (start + shared.config.snapshot_chunk_bytes).min(len);
        let message = Message::InstallSnapshot {
            term: shared.hard.term,
            meta: snapshot.meta.clone(),
            offset: send.offset,
            data: snapshot.data.slice(start..end),
            done: end == len,
        };
        shared.stats.snapshot_chunks_sent += 1;
        shared.send_now(peer, message);
    }
}
