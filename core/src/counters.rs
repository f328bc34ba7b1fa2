//! Counters the node keeps; shells export them (Prometheus, simulator reports).
//!
//! Invariants:
//! - Counters only ever increase; they are plain data with no effect on behaviour.
//! - Every rejected frame increments exactly one field of [`DecodeErrorCounters`], so its
//!   `total()` is the number of rejected frames, whatever the cause.

use crate::auth::{AuthError, Verified};
use crate::wire::{DecodeError, FrameError, Message};

/// Rejected frames, by reason: failed authentication or failed decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeErrorCounters {
    pub empty: u64,
    pub too_large: u64,
    pub unknown_version: u64,
    pub malformed: u64,
    pub trailing_bytes: u64,
    pub over_limit: u64,
    /// Too short to hold a version byte and a MAC tag.
    pub truncated: u64,
    /// An all-zero tag (an insecure peer) on a keyed node.
    pub missing_mac: u64,
    /// A tag that verifies under none of the node's keys: a wrong key, or a changed frame.
    pub bad_mac: u64,
}

impl DecodeErrorCounters {
    pub fn count(&mut self, error: &DecodeError) {
        let slot = match error {
            DecodeError::Empty => &mut self.empty,
            DecodeError::TooLarge { .. } => &mut self.too_large,
            DecodeError::UnknownVersion(_) => &mut self.unknown_version,
            DecodeError::Malformed(_) => &mut self.malformed,
            DecodeError::TrailingBytes(_) => &mut self.trailing_bytes,
            DecodeError::OverLimit(_) => &mut self.over_limit,
        };
        *slot += 1;
    }

    pub fn count_auth(&mut self, error: &AuthError) {
        let slot = match error {
            AuthError::Truncated { .. } => &mut self.truncated,
            AuthError::Missing => &mut self.missing_mac,
            AuthError::BadMac => &mut self.bad_mac,
        };
        *slot += 1;
    }

    /// Counts one frame rejected by [`crate::wire::decode_sealed`].
    pub fn count_frame(&mut self, error: &FrameError) {
        match error {
            FrameError::Auth(e) => self.count_auth(e),
            FrameError::Decode(e) => self.count(e),
        }
    }

    /// Frames that failed authentication.
    pub fn auth_total(&self) -> u64 {
        self.truncated + self.missing_mac + self.bad_mac
    }

    /// Every rejected frame.
    pub fn total(&self) -> u64 {
        self.empty
            + self.too_large
            + self.unknown_version
            + self.malformed
            + self.trailing_bytes
            + self.over_limit
            + self.auth_total()
    }
}

/// Accepted frames, by the key they verified under. A `previous` count that stays at zero
/// on every node means no peer seals with the old key any more, and it can be retired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedCounters {
    pub current: u64,
    pub previous: u64,
    /// Accepted unchecked by an insecure node.
    pub unchecked: u64,
}

impl VerifiedCounters {
    pub fn count(&mut self, verified: Verified) {
        let slot = match verified {
            Verified::Current => &mut self.current,
            Verified::Previous => &mut self.previous,
            Verified::Unchecked => &mut self.unchecked,
        };
        *slot += 1;
    }
}

/// Everything a node counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub decode_errors: DecodeErrorCounters,
    /// Accepted frames by verifying key (filled by callers of [`crate::wire::decode_sealed`]).
    pub frames_verified: VerifiedCounters,
    /// Messages handled, by [`Message::kind_index`].
    pub messages_in: [u64; Message::KINDS],
    /// Messages emitted, by [`Message::kind_index`].
    pub messages_out: [u64; Message::KINDS],
    /// Bytes of the accepted frames (tag included), by [`Message::kind_index`].
    pub bytes_in: [u64; Message::KINDS],
    /// Messages from an older incarnation of a peer, ignored.
    pub stale_epoch_messages: u64,
    /// Messages whose claimed sender is on another host than the connection they came
    /// from, dropped.
    pub forged_sender: u64,
    /// Kernel-level host probes asked for, and answered.
    pub host_probes: u64,
    pub host_probes_answered: u64,
    /// Links that went stalled: the agent silent, its host answering.
    pub agents_stalled: u64,
    /// Connections to peers the shell reported closed or failed.
    pub connections_lost: u64,
    /// Times this node found its address held at a newer version and became a newer
    /// incarnation.
    pub incarnations_advanced: u64,
    /// Digest lines sent to peers that spoke under a superseded epoch.
    pub stale_replies: u64,
    /// Messages claiming to come from this node's own address, ignored.
    pub self_messages: u64,
    pub links_up: u64,
    pub links_dead: u64,
    pub links_disconnected: u64,
    pub links_evicted: u64,
    pub links_superseded: u64,
    /// Suspicion steps started by a missed deadline or a cascading check.
    pub suspicions: u64,
    /// Suspicion steps started because another node's record dropped an active neighbour.
    pub cascades: u64,
    /// Suspect or stalled links that were heard from again (false suspicions recovered).
    pub suspicions_cleared: u64,
    pub joins_sent: u64,
    /// JOINs left unanswered by a contact not yet in the overlay.
    pub joins_deferred: u64,
    pub neighbor_requests: u64,
    pub neighbor_timeouts: u64,
    pub records_applied: u64,
    pub records_stale: u64,
    /// Queued flood copies dropped because that neighbour sent the same version first.
    pub floods_cancelled: u64,
    /// Broadcast tree: links pruned to lazy after a pushed copy brought nothing new.
    pub tree_prunes: u64,
    /// Broadcast tree: announced versions asked for (GRAFT) after the graft timeout.
    pub tree_grafts: u64,
    /// Broadcast tree: times a dead link made every link eager again.
    pub tree_unprunes: u64,
    /// Records refused because the store is full: a new node beyond `records.max_records`,
    /// or backends and task endpoints beyond `records.max_stored_backends`.
    pub records_rejected_full: u64,
    /// Records whose services delta starts from a version not held (asked for in full).
    pub records_delta_gaps: u64,
    /// Records with inconsistent services (a malformed delta, a services version after the
    /// record's, or more backends than a record may hold once applied), ignored.
    pub records_invalid: u64,
    /// Records claiming to be this node's own, ignored.
    pub records_own_ignored: u64,
    /// Records refused because a tombstone covers their version (a late copy of a
    /// collected record; see [`crate::records`]).
    pub records_tombstoned: u64,
    /// Records (slots) collected after their origin stayed unreachable for
    /// `records.gc_horizon` (here, or at a peer: see `records_collected_by_peer`).
    pub records_collected: u64,
    /// Of those, records collected because a peer had collected them (a COLLECTED message)
    /// and this node did not reach their origin either.
    pub records_collected_by_peer: u64,
    /// Outputs dropped because the queue was full.
    pub outputs_dropped: u64,
    /// Local service sets refused for exceeding the record bounds.
    pub records_too_large: u64,
    /// Records received over the byte bound, ignored.
    pub records_rejected_size: u64,
    /// The view became complete by catching up with a complete peer / by waiting out
    /// `view_complete_timeout` (at most one of the two, once).
    pub views_completed_by_peer: u64,
    pub views_completed_by_timeout: u64,
    /// Kernel operations emitted.
    pub kernel_ops: u64,
    /// Removals held back while the view was incomplete (emitted once it is).
    pub kernel_removals_withheld: u64,
    /// Kernel diffs that did not apply to the node's own applied state (a bug if ever
    /// non-zero).
    pub kernel_diff_errors: u64,
}

impl Counters {
    /// The plain event counters with a name and a one-line help each, for exporters (the
    /// per-kind arrays, decode errors and verified frames are exported on their own).
    pub fn named_counters(&self) -> [(&'static str, &'static str, u64); 35] {
        [
            (
                "stale_replies",
                "Digest lines sent to peers that spoke under a superseded epoch",
                self.stale_replies,
            ),
            (
                "self_messages",
                "Messages claiming this node's own address, ignored",
                self.self_messages,
            ),
            ("links_up", "Active links established", self.links_up),
            (
                "links_dead",
                "Active links declared dead by the adaptive ping",
                self.links_dead,
            ),
            (
                "links_disconnected",
                "Active links closed by the neighbour's DISCONNECT",
                self.links_disconnected,
            ),
            (
                "links_evicted",
                "Active links evicted for a new neighbour",
                self.links_evicted,
            ),
            (
                "links_superseded",
                "Active links replaced by a newer incarnation of the neighbour",
                self.links_superseded,
            ),
            (
                "suspicions",
                "Suspicion steps started by a missed ping deadline",
                self.suspicions,
            ),
            (
                "cascades",
                "Suspicion steps started by another node's record dropping a neighbour",
                self.cascades,
            ),
            (
                "suspicions_cleared",
                "Suspect or stalled links heard from again (false suspicions recovered)",
                self.suspicions_cleared,
            ),
            ("joins_sent", "JOIN messages sent", self.joins_sent),
            (
                "joins_deferred",
                "JOINs left unanswered by a contact not yet in the overlay",
                self.joins_deferred,
            ),
            (
                "neighbor_requests",
                "NEIGHBOR requests sent",
                self.neighbor_requests,
            ),
            (
                "neighbor_timeouts",
                "NEIGHBOR requests left unanswered",
                self.neighbor_timeouts,
            ),
            (
                "records_applied",
                "Peer records applied",
                self.records_applied,
            ),
            (
                "records_stale",
                "Peer records older than the one held",
                self.records_stale,
            ),
            (
                "floods_cancelled",
                "Queued flood copies dropped because that neighbour sent the version first",
                self.floods_cancelled,
            ),
            (
                "tree_prunes",
                "Broadcast tree links pruned to lazy after a pushed duplicate",
                self.tree_prunes,
            ),
            (
                "tree_grafts",
                "Broadcast tree versions asked for after a missed announcement",
                self.tree_grafts,
            ),
            (
                "tree_unprunes",
                "Broadcast tree: times a dead link made every link eager again",
                self.tree_unprunes,
            ),
            (
                "records_rejected_full",
                "Records refused because the store is full (records or stored backends)",
                self.records_rejected_full,
            ),
            (
                "records_delta_gaps",
                "Records whose services delta starts from a version not held",
                self.records_delta_gaps,
            ),
            (
                "records_invalid",
                "Records with inconsistent services or too many backends once applied",
                self.records_invalid,
            ),
            (
                "records_own_ignored",
                "Records claiming to be this node's own, ignored",
                self.records_own_ignored,
            ),
            (
                "records_tombstoned",
                "Records refused because a tombstone covers their version",
                self.records_tombstoned,
            ),
            (
                "records_collected",
                "Records of nodes unreachable for the GC horizon, removed",
                self.records_collected,
            ),
            (
                "records_collected_by_peer",
                "Records removed because a peer had collected them and their node is unreachable",
                self.records_collected_by_peer,
            ),
            (
                "outputs_dropped",
                "Core outputs dropped because the queue was full",
                self.outputs_dropped,
            ),
            (
                "records_too_large",
                "Local service sets refused for exceeding the record bounds",
                self.records_too_large,
            ),
            (
                "records_rejected_size",
                "Received records over the byte bound, ignored",
                self.records_rejected_size,
            ),
            (
                "views_completed_by_peer",
                "Views completed by catching up with a complete peer",
                self.views_completed_by_peer,
            ),
            (
                "views_completed_by_timeout",
                "Views completed by waiting out the completeness timeout",
                self.views_completed_by_timeout,
            ),
            (
                "core_kernel_ops",
                "Kernel operations the core emitted",
                self.kernel_ops,
            ),
            (
                "kernel_removals_withheld",
                "Kernel removals held back while the view was incomplete",
                self.kernel_removals_withheld,
            ),
            (
                "kernel_diff_errors",
                "Kernel diffs that did not apply to the applied state (a bug if ever non-zero)",
                self.kernel_diff_errors,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ClusterKey, FrameAuth, TAG_LEN};
    use crate::wire::{self, Limits, WIRE_VERSION};

    /// One frame of each rejection cause, through `decode_sealed`: each lands in its own
    /// field, and `total` counts them all.
    #[test]
    fn every_frame_error_is_counted_once_by_cause() {
        let auth = FrameAuth::key(ClusterKey::new([1; 32]).unwrap());
        let limits = Limits {
            max_frame_len: 64,
            ..Limits::default()
        };
        let tagged = |payload: &[u8]| {
            let mut frame = payload.to_vec();
            crate::auth::seal(&auth, &mut frame);
            frame
        };
        let frames: Vec<Vec<u8>> = vec![
            vec![0; 65],                                        // too large
            vec![9; 40],                                        // unknown version
            vec![WIRE_VERSION; TAG_LEN],                        // truncated
            [vec![WIRE_VERSION, 0], vec![0; TAG_LEN]].concat(), // missing
            vec![WIRE_VERSION; 40],                             // bad mac
            tagged(&[WIRE_VERSION, 0xff]),                      // malformed
        ];
        let mut c = DecodeErrorCounters::default();
        for frame in &frames {
            let error = wire::decode_sealed(frame, &limits, &auth).unwrap_err();
            c.count_frame(&error);
        }
        assert_eq!(
            c,
            DecodeErrorCounters {
                too_large: 1,
                unknown_version: 1,
                truncated: 1,
                missing_mac: 1,
                bad_mac: 1,
                malformed: 1,
                ..Default::default()
            }
        );
        assert_eq!(c.total(), frames.len() as u64);
        assert_eq!(c.auth_total(), 3);
    }
}
