//! The broadcast tree (Plumtree: Leitão, Pereira, Rodrigues, "Epidemic Broadcast Trees",
//! SRDS 2007) over the active views, used when `records.broadcast` is
//! [`crate::config::Broadcast::Tree`].
//!
//! Every active link is eager (versions are pushed on it) until the node that received a
//! pushed copy it already held prunes it; then it is lazy both ways and carries IHAVE
//! announcements instead. A version announced and still missing after
//! `records.graft_timeout` is asked for with GRAFT, which makes that link eager again. One
//! tree serves every origin (as in iroh-gossip), so links that bring duplicates for one
//! origin's versions are pruned for all; anti-entropy stays the safety net for whatever the
//! tree and its grafts miss.
//!
//! A node that holds an announcement of a version it lacks knows its records are behind:
//! the links that version adds may be what reaches a node it no longer reaches. While such
//! an announcement is younger than `records.announcement_hold`, the node reports nobody
//! unreachable (the same rule as while its view is incomplete), so a reachability hole
//! left by a version still in flight through a graft is never reported as a failure.
//!
//! Invariants:
//! - `lazy` grows only by active neighbours (the node prunes nothing else), `announce`
//!   only by the neighbours a version is flooded to, and both name active neighbours only
//!   after [`BroadcastTree::retain`], which every flush of floods or announcements runs;
//! - `announce_at` is set while announcements are queued (and may stay set over queues
//!   that `peer_holds` emptied, until it passes): they go out no later than it;
//! - a dead link makes every link eager (`unprune_all`); duplicates prune them again;
//! - `missing` holds at most `max_missing` origins, each a version newer than the one held
//!   when it was announced, with at most [`MAX_ANNOUNCERS`] announcers;
//! - `hold_until` is the latest `first + hold` of the announcements since the last hold
//!   ran out (conservative: a hold lasts until the newest announcement's runs out), or
//!   `None` once [`BroadcastTree::holds`] saw it run out: [`BroadcastTree::poll_timeout`]
//!   never names a time that has passed, even while a version stays missing past its
//!   hold (a long graft timeout, announcers that trickle in).

use crate::records::DigestEntry;
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Most announcers remembered per missing version (the next is asked when one fails).
pub(crate) const MAX_ANNOUNCERS: usize = 4;

/// A version announced to this node that it does not hold.
#[derive(Debug)]
struct Missing {
    epoch: u64,
    seq: u64,
    /// When the next GRAFT for it is due.
    due: Time,
    /// Who announced it, first first.
    announcers: Vec<SocketAddr>,
}

/// The tree state of one node.
#[derive(Debug)]
pub(crate) struct BroadcastTree {
    /// Active neighbours announced to instead of pushed to.
    lazy: BTreeSet<SocketAddr>,
    /// Announcements waiting for `announce_at`, per lazy neighbour, by origin.
    announce: BTreeMap<SocketAddr, BTreeMap<SocketAddr, DigestEntry>>,
    /// When the queued announcements go out (set with the first one queued).
    announce_at: Option<Time>,
    /// Versions announced and not held, by origin.
    missing: BTreeMap<SocketAddr, Missing>,
    max_missing: usize,
    /// Unreachable reports are held until then while `missing` is not empty.
    hold_until: Option<Time>,
}

impl BroadcastTree {
    pub(crate) fn new(max_missing: usize) -> BroadcastTree {
        BroadcastTree {
            lazy: BTreeSet::new(),
            announce: BTreeMap::new(),
            announce_at: None,
            missing: BTreeMap::new(),
            max_missing,
            hold_until: None,
        }
    }

    pub(crate) fn is_lazy(&self, addr: &SocketAddr) -> bool {
        self.lazy.contains(addr)
    }

    /// Queues an announcement of `entry` for the lazy neighbour `to` (a newer version of
    /// the same origin replaces an older one); the queue goes out `delay` after its first
    /// entry.
    pub(crate) fn queue_announcement(
        &mut self,
        now: Time,
        to: SocketAddr,
        entry: DigestEntry,
        delay: Duration,
    ) {
        let queue = self.announce.entry(to).or_default();
        match queue.get(&entry.addr) {
            Some(queued) if (queued.epoch, queued.seq) >= (entry.epoch, entry.seq) => {}
            _ => {
                queue.insert(entry.addr, entry);
            }
        }
        self.announce_at.get_or_insert(now + delay);
    }

    /// Whether the queued announcements are due at `now`.
    pub(crate) fn announcements_due(&self, now: Time) -> bool {
        self.announce_at.is_some_and(|at| now >= at)
    }

    /// `peer` holds `origin`'s version `version` (it sent or announced it): a queued
    /// announcement of that version or an older one would tell it nothing.
    pub(crate) fn peer_holds(
        &mut self,
        peer: &SocketAddr,
        origin: &SocketAddr,
        version: (u64, u64),
    ) {
        if let Some(queue) = self.announce.get_mut(peer) {
            if queue
                .get(origin)
                .is_some_and(|queued| (queued.epoch, queued.seq) <= version)
            {
                queue.remove(origin);
            }
        }
    }

    /// The queued announcements, per neighbour, once they are due at `now` (else none).
    pub(crate) fn take_announcements(
        &mut self,
        now: Time,
    ) -> BTreeMap<SocketAddr, Vec<DigestEntry>> {
        if !self.announcements_due(now) {
            return BTreeMap::new();
        }
        self.announce_at = None;
        std::mem::take(&mut self.announce)
            .into_iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(to, queue)| (to, queue.into_values().collect()))
            .collect()
    }

    /// A pushed copy from `from` brought nothing new: returns whether to PRUNE the link
    /// (it was eager; it is lazy now).
    pub(crate) fn on_duplicate(&mut self, from: SocketAddr) -> bool {
        self.lazy.insert(from)
    }

    /// `from` pruned the link: announce to it from now on.
    pub(crate) fn on_prune(&mut self, from: SocketAddr) {
        self.lazy.insert(from);
    }

    /// Every link is eager again (a link died: see `Replication::on_link_died`).
    pub(crate) fn unprune_all(&mut self) {
        self.lazy.clear();
    }

    /// `from` grafted the link: push to it from now on.
    pub(crate) fn on_graft(&mut self, from: SocketAddr) {
        self.lazy.remove(&from);
    }

    /// `from` announced `entry`, which this node does not hold (the caller checked).
    pub(crate) fn on_announcement(
        &mut self,
        now: Time,
        from: SocketAddr,
        entry: DigestEntry,
        graft_timeout: Duration,
        hold: Duration,
    ) {
        let version = (entry.epoch, entry.seq);
        let full = self.missing.len() >= self.max_missing;
        match self.missing.get_mut(&entry.addr) {
            Some(m) if (m.epoch, m.seq) >= version => {
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                    m.announcers.push(from);
                }
                return;
            }
            Some(m) => {
                // A newer version: wait for it as for a new one.
                (m.epoch, m.seq) = version;
                m.due = now + graft_timeout;
                m.announcers.clear();
                m.announcers.push(from);
            }
            None if full => return,
            None => {
                self.missing.insert(
                    entry.addr,
                    Missing {
                        epoch: entry.epoch,
                        seq: entry.seq,
                        due: now + graft_timeout,
                        announcers: vec![from],
                    },
                );
            }
        }
        self.hold_until = Some(self.hold_until.map_or(now + hold, |t| t.max(now + hold)));
    }

    /// `origin`'s version `version` arrived: an announcement of it or of an older one is
    /// settled.
    pub(crate) fn on_received(&mut self, origin: &SocketAddr, version: (u64, u64)) {
        if self
            .missing
            .get(origin)
            .is_some_and(|m| (m.epoch, m.seq) <= version)
        {
            self.missing.remove(origin);
        }
    }

    /// Whether unreachable reports are held at `now`; a hold that has run out is
    /// forgotten (so no deadline names it again).
    pub(crate) fn holds(&mut self, now: Time) -> bool {
        match self.hold_until {
            Some(until) if now >= until => {
                self.hold_until = None;
                false
            }
            Some(_) => !self.missing.is_empty(),
            None => false,
        }
    }

    /// When a GRAFT, the queued announcements or the end of a hold is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        let graft = self.missing.values().map(|m| m.due).min();
        let hold = self.hold_until.filter(|_| !self.missing.is_empty());
        graft.into_iter().chain(hold).chain(self.announce_at).min()
    }

    /// The GRAFTs due at `now`: per announcer (which becomes eager), the origins to ask it
    /// for. Each missing version asks its first announcer still `active`, then waits
    /// `graft_timeout` for the answer before asking the next; one with nobody left to ask
    /// is given up (anti-entropy brings it).
    pub(crate) fn due_grafts(
        &mut self,
        now: Time,
        graft_timeout: Duration,
        is_active: impl Fn(&SocketAddr) -> bool,
    ) -> BTreeMap<SocketAddr, Vec<SocketAddr>> {
        let mut grafts: BTreeMap<SocketAddr, Vec<SocketAddr>> = BTreeMap::new();
        let mut given_up = Vec::new();
        for (origin, m) in self.missing.iter_mut().filter(|(_, m)| m.due <= now) {
            m.announcers.retain(|a| is_active(a));
            if m.announcers.is_empty() {
                given_up.push(*origin);
                continue;
            }
            let to = m.announcers.remove(0);
            grafts.entry(to).or_default().push(*origin);
            m.due = now + graft_timeout;
        }
        for origin in given_up {
            self.missing.remove(&origin);
        }
        for to in grafts.keys() {
            self.lazy.remove(to);
        }
        grafts
    }

    /// Forgets neighbours that are no longer active.
    pub(crate) fn retain(&mut self, is_active: impl Fn(&SocketAddr) -> bool) {
        self.lazy.retain(|a| is_active(a));
        self.announce.retain(|a, _| is_active(a));
    }

    /// The invariants: `missing` within its bound, announcers bounded, and no
    /// awaited version already `held` (its arrival settles it).
    pub(crate) fn check(
        &self,
        held: impl Fn(&SocketAddr, (u64, u64)) -> bool,
    ) -> Result<(), String> {
        if self.missing.len() > self.max_missing {
            return Err(format!(
                "{} missing versions, bound {}",
                self.missing.len(),
                self.max_missing
            ));
        }
        for (origin, m) in &self.missing {
            // Empty while the last announcer's answer to a GRAFT is awaited.
            if m.announcers.len() > MAX_ANNOUNCERS {
                return Err(format!("{origin}: {} announcers", m.announcers.len()));
            }
            if held(origin, (m.epoch, m.seq)) {
                return Err(format!("{origin}: awaits a version it holds"));
            }
        }
        Ok(())
    }

    /// Number of lazy links (for tests and counters).
    #[cfg(test)]
    pub(crate) fn lazy_len(&self) -> usize {
        self.lazy.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        ([10, 0, 0, 1], port).into()
    }

    fn entry(port: u16, seq: u64) -> DigestEntry {
        DigestEntry {
            addr: addr(port),
            epoch: 1,
            seq,
        }
    }

    const GRAFT: Duration = Duration::from_millis(15);
    const HOLD: Duration = Duration::from_millis(100);

    #[test]
    fn a_missing_announcement_grafts_its_announcers_in_turn_then_gives_up() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(16);
        tree.on_prune(addr(2));
        tree.on_announcement(t(0), addr(2), entry(9, 3), GRAFT, HOLD);
        tree.on_announcement(t(1), addr(3), entry(9, 3), GRAFT, HOLD);
        assert!(tree.holds(t(50)));
        assert_eq!(tree.poll_timeout(), Some(t(15)));
        assert!(tree.due_grafts(t(14), GRAFT, |_| true).is_empty());
        let first = tree.due_grafts(t(15), GRAFT, |_| true);
        assert_eq!(first.get(&addr(2)), Some(&vec![addr(9)]));
        assert!(!tree.is_lazy(&addr(2)), "a graft makes the link eager");
        let second = tree.due_grafts(t(30), GRAFT, |_| true);
        assert_eq!(second.get(&addr(3)), Some(&vec![addr(9)]));
        assert!(tree.due_grafts(t(45), GRAFT, |_| true).is_empty());
        assert!(
            !tree.holds(t(45)),
            "given up: nothing missing, nothing held"
        );
        assert_eq!(tree.poll_timeout(), None);
    }

    #[test]
    fn the_version_or_a_newer_one_settles_an_announcement() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(16);
        tree.on_announcement(t(0), addr(2), entry(9, 3), GRAFT, HOLD);
        tree.on_received(&addr(9), (1, 2));
        assert!(tree.holds(t(1)), "an older version settles nothing");
        tree.on_received(&addr(9), (1, 4));
        assert!(!tree.holds(t(1)));
        assert!(tree.due_grafts(t(20), GRAFT, |_| true).is_empty());
    }

    #[test]
    fn a_hold_ends_after_the_newest_announcement_ages_out() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(16);
        tree.on_announcement(t(0), addr(2), entry(9, 3), GRAFT, HOLD);
        tree.on_announcement(t(40), addr(2), entry(8, 1), GRAFT, HOLD);
        assert!(tree.holds(t(139)));
        assert!(!tree.holds(t(140)), "held at most `hold` past the newest");
        assert_eq!(tree.poll_timeout(), Some(t(15)));
    }

    #[test]
    fn a_hold_that_ran_out_is_never_a_deadline_again() {
        let t = Time::from_millis;
        let slow = Duration::from_millis(400);
        let mut tree = BroadcastTree::new(16);
        tree.on_announcement(t(0), addr(2), entry(9, 3), slow, HOLD);
        assert_eq!(tree.poll_timeout(), Some(t(100)), "the hold ends first");
        assert!(!tree.holds(t(100)));
        assert_eq!(
            tree.poll_timeout(),
            Some(t(400)),
            "still missing, but only the graft is due (a past hold would wake the node at once, \
             again and again)"
        );
    }

    #[test]
    fn missing_versions_are_bounded_and_inactive_announcers_are_skipped() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(2);
        for origin in 10..20 {
            tree.on_announcement(t(0), addr(2), entry(origin, 1), GRAFT, HOLD);
        }
        let grafts = tree.due_grafts(t(15), GRAFT, |a| *a != addr(2));
        assert!(grafts.is_empty(), "its only announcer is gone");
        assert!(!tree.holds(t(16)));
        for origin in 10..20 {
            tree.on_announcement(t(20), addr(3), entry(origin, 1), GRAFT, HOLD);
        }
        let grafts = tree.due_grafts(t(35), GRAFT, |_| true);
        assert_eq!(grafts[&addr(3)].len(), 2, "at most max_missing origins");
    }

    #[test]
    fn announcements_keep_the_newest_version_and_go_to_active_neighbours_only() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(16);
        let delay = Duration::from_millis(50);
        tree.queue_announcement(t(0), addr(2), entry(9, 3), delay);
        tree.queue_announcement(t(10), addr(2), entry(9, 2), delay);
        tree.queue_announcement(t(20), addr(3), entry(9, 4), delay);
        tree.on_prune(addr(3));
        tree.retain(|a| *a == addr(2));
        assert_eq!(tree.lazy_len(), 0);
        // They wait `delay` after the first one queued.
        assert_eq!(tree.poll_timeout(), Some(t(50)));
        assert!(tree.take_announcements(t(49)).is_empty());
        let out = tree.take_announcements(t(50));
        assert_eq!(out.len(), 1);
        assert_eq!(out[&addr(2)], vec![entry(9, 3)]);
        assert!(!tree.announcements_due(t(100)));
        assert_eq!(tree.poll_timeout(), None);
    }

    #[test]
    fn a_dead_link_makes_every_link_eager_again() {
        let mut tree = BroadcastTree::new(16);
        assert!(tree.on_duplicate(addr(2)));
        tree.on_prune(addr(3));
        assert!(tree.is_lazy(&addr(2)) && tree.is_lazy(&addr(3)));
        tree.unprune_all();
        assert!(!tree.is_lazy(&addr(2)) && !tree.is_lazy(&addr(3)));
        // A duplicate prunes again.
        assert!(tree.on_duplicate(addr(2)));
    }

    #[test]
    fn a_neighbour_that_holds_a_version_is_not_told_of_it() {
        let t = Time::from_millis;
        let mut tree = BroadcastTree::new(16);
        let delay = Duration::from_millis(50);
        tree.queue_announcement(t(0), addr(2), entry(9, 3), delay);
        tree.queue_announcement(t(0), addr(2), entry(8, 5), delay);
        tree.queue_announcement(t(0), addr(3), entry(9, 3), delay);
        // Neighbour 2 sent (or announced) origin 9's version 3, and an older one of 8.
        tree.peer_holds(&addr(2), &entry(9, 0).addr, (1, 3));
        tree.peer_holds(&addr(2), &entry(8, 0).addr, (1, 4));
        let out = tree.take_announcements(t(50));
        assert_eq!(out[&addr(2)], vec![entry(8, 5)]);
        assert_eq!(out[&addr(3)], vec![entry(9, 3)]);
    }
}
