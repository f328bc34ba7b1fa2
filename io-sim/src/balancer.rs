//! The kernel load balancer of one host for one virtual service, as IPVS runs it: the
//! weighted-least-connection scheduler (`wlc`) and the connection table that feeds it.
//!
//! The model:
//! - IPVS counts, per destination, *active* connections (ESTABLISHED) and *inactive* ones
//!   (every other state: SYN_RECV while a handshake is open, FIN/TIME_WAIT after a close);
//! - `wlc` gives each destination the overhead `active * 256 + inactive` and picks the one
//!   with the least `overhead / weight`, never one of weight 0, the first one on a tie;
//! - an entry leaves the table when its state's timeout passes, with the kernel's defaults:
//!   SYN_RECV 60 s (restarted by every retransmitted SYN), ESTABLISHED 15 min, TIME_WAIT
//!   120 s. A client that gives up on a handshake sends nothing, so its entry lingers;
//! - packets of an existing entry keep going to its destination, even after the agent
//!   removed that destination from the service (`expire_nodest_conn` is off by default):
//!   only *new* connections are scheduled. A removed destination keeps its counters (the
//!   kernel parks it in a trash list and revives it with them if it is added back).
//!
//! One simplification: the destination list is in address order here; the kernel's is
//! newest first. It only changes which of several equally loaded destinations wins a tie.
//!
//! Invariant: each destination's counters equal the number of live entries bound to it in
//! each class (checked by [`Balancer::check_invariants`]).

use minuteman_core::Time;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// SYN_RECV timeout of IPVS's TCP state table.
pub const SYN_TIMEOUT: Duration = Duration::from_secs(60);
/// ESTABLISHED timeout of IPVS's TCP state table.
pub const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// TIME_WAIT timeout of IPVS's TCP state table.
pub const TIME_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection in the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

/// Where a connection is, as IPVS classifies it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Established,
    Closed,
}

impl State {
    fn is_active(self) -> bool {
        self == State::Established
    }
}

#[derive(Clone, Debug)]
struct Entry {
    dest: SocketAddr,
    state: State,
    expires: Time,
}

/// Per-destination connection counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: u32,
    pub inactive: u32,
}

impl Counts {
    /// IPVS's `ip_vs_dest_conn_overhead`.
    pub fn overhead(self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    fn add(&mut self, state: State) {
        if state.is_active() {
            self.active += 1;
        } else {
            self.inactive += 1;
        }
    }

    fn remove(&mut self, state: State) {
        let slot = if state.is_active() {
            &mut self.active
        } else {
            &mut self.inactive
        };
        *slot = slot
            .checked_sub(1)
            .expect("a counter never goes below zero");
    }
}

/// One host's IPVS connection table and scheduler.
#[derive(Clone, Debug, Default)]
pub struct Balancer {
    next_id: u64,
    entries: BTreeMap<ConnId, Entry>,
    /// `(expiry, id)` of every entry: the table's timer wheel.
    expiry: BTreeSet<(Time, ConnId)>,
    /// Lookup only, never iterated: the scan walks the service's destinations.
    counts: FxHashMap<SocketAddr, Counts>,
}

impl Balancer {
    pub fn new() -> Balancer {
        Balancer::default()
    }

    /// The counters of `dest` (zero when it has no entry).
    pub fn counts(&self, dest: &SocketAddr) -> Counts {
        self.counts.get(dest).copied().unwrap_or_default()
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `wlc` choice among `dests` (in list order, with their weights) at `now`, or
    /// `None` when no destination has a positive weight.
    pub fn pick(
        &mut self,
        now: Time,
        dests: impl IntoIterator<Item = (SocketAddr, u32)>,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let mut least: Option<(SocketAddr, u64, u64)> = None;
        for (dest, weight) in dests {
            if weight == 0 {
                continue;
            }
            let overhead = self.counts(&dest).overhead();
            let weight = u64::from(weight);
            // overhead / weight < least_overhead / least_weight, without division.
            let better = match least {
                None => true,
                Some((_, least_overhead, least_weight)) => {
                    u128::from(least_overhead) * u128::from(weight)
                        > u128::from(overhead) * u128::from(least_weight)
                }
            };
            if better {
                least = Some((dest, overhead, weight));
            }
        }
        least.map(|(dest, _, _)| dest)
    }

    /// Opens a connection to `dest` at `now` (the first SYN went through): an inactive
    /// entry that expires `SYN_TIMEOUT` later unless the handshake moves on.
    pub fn open(&mut self, now: Time, dest: SocketAddr) -> ConnId {
        self.expire(now);
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let entry = Entry {
            dest,
            state: State::Handshake,
            expires: now + SYN_TIMEOUT,
        };
        self.counts.entry(dest).or_default().add(entry.state);
        self.expiry.insert((entry.expires, id));
        self.entries.insert(id, entry);
        id
    }

    /// A retransmitted SYN of `id` passed at `at`: the entry lives `SYN_TIMEOUT` from then.
    pub fn retransmitted(&mut self, at: Time, id: ConnId) {
        if let Some(entry) = self.entries.get(&id) {
            if entry.state == State::Handshake {
                self.set(id, State::Handshake, at + SYN_TIMEOUT);
            }
        }
    }

    /// The handshake of `id` completed at `now`: the entry becomes active.
    pub fn established(&mut self, now: Time, id: ConnId) {
        self.expire(now);
        if self.entries.contains_key(&id) {
            self.set(id, State::Established, now + ESTABLISHED_TIMEOUT);
        }
    }

    /// `id` closed at `now` after carrying its request: inactive for `TIME_WAIT_TIMEOUT`.
    pub fn closed(&mut self, now: Time, id: ConnId) {
        self.expire(now);
        if self.entries.contains_key(&id) {
            self.set(id, State::Closed, now + TIME_WAIT_TIMEOUT);
        }
    }

    fn set(&mut self, id: ConnId, state: State, expires: Time) {
        let entry = self.entries.get_mut(&id).expect("caller checked");
        let counts = self.counts.get_mut(&entry.dest).expect("entry is counted");
        counts.remove(entry.state);
        counts.add(state);
        self.expiry.remove(&(entry.expires, id));
        self.expiry.insert((expires, id));
        entry.state = state;
        entry.expires = expires;
    }

    /// Drops every entry whose timeout passed at or before `now`.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            let entry = self.entries.remove(&id).expect("expiry indexes entries");
            let counts = self.counts.get_mut(&entry.dest).expect("entry is counted");
            counts.remove(entry.state);
        }
    }

    /// Recounts every destination from the entries and compares with the counters.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut recount: BTreeMap<SocketAddr, Counts> = BTreeMap::new();
        for entry in self.entries.values() {
            recount.entry(entry.dest).or_default().add(entry.state);
        }
        for (dest, counts) in &self.counts {
            let expected = recount.get(dest).copied().unwrap_or_default();
            if *counts != expected {
                return Err(format!("{dest}: counters {counts:?}, entries {expected:?}"));
            }
        }
        if self.expiry.len() != self.entries.len() {
            return Err("expiry index and entries differ in size".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 20_000 + i))
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn ties_go_to_the_first_and_load_spreads_round_robin() {
        let mut lb = Balancer::new();
        let dests: Vec<(SocketAddr, u32)> = (0..4).map(|i| (addr(i), 1)).collect();
        let mut picked = Vec::new();
        for _ in 0..8 {
            let d = lb.pick(at(0), dests.iter().copied()).unwrap();
            let id = lb.open(at(0), d);
            lb.established(at(0), id);
            lb.closed(at(0), id);
            picked.push(d.port() - 20_000);
        }
        // Every closed connection stays in TIME_WAIT (inactive): equal load, in list order.
        assert_eq!(picked, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        lb.check_invariants().unwrap();
    }

    #[test]
    fn an_active_connection_weighs_256_inactive_ones() {
        let mut lb = Balancer::new();
        let busy = lb.open(at(0), addr(0));
        lb.established(at(0), busy);
        for _ in 0..255 {
            lb.open(at(0), addr(1));
        }
        let dests = [(addr(0), 1), (addr(1), 1)];
        // 256 vs 255: the second is lighter.
        assert_eq!(lb.pick(at(0), dests), Some(addr(1)));
        lb.open(at(0), addr(1));
        // 256 vs 256: the tie goes to the first.
        assert_eq!(lb.pick(at(0), dests), Some(addr(0)));
        lb.check_invariants().unwrap();
    }

    #[test]
    fn weights_scale_the_share_and_zero_never_wins() {
        let mut lb = Balancer::new();
        let dests = [(addr(0), 3), (addr(1), 1), (addr(2), 0)];
        let mut share = [0u32; 3];
        for _ in 0..400 {
            let d = lb.pick(at(0), dests).unwrap();
            let id = lb.open(at(0), d);
            lb.established(at(0), id);
            share[usize::from(d.port() - 20_000)] += 1;
        }
        assert_eq!(share, [300, 100, 0]);
        assert_eq!(lb.pick(at(0), [(addr(2), 0)]), None);
        assert_eq!(lb.pick(at(0), []), None);
    }

    #[test]
    fn entries_expire_by_state_and_retransmissions_extend_handshakes() {
        let mut lb = Balancer::new();
        let done = lb.open(at(0), addr(0));
        lb.established(at(1), done);
        lb.closed(at(2), done);
        let hanging = lb.open(at(0), addr(1));
        lb.retransmitted(at(1_000), hanging);
        lb.expire(at(60_999));
        assert_eq!(
            lb.counts(&addr(1)).inactive,
            1,
            "retransmission extended it"
        );
        lb.expire(at(61_000));
        assert_eq!(lb.counts(&addr(1)), Counts::default());
        assert_eq!(lb.counts(&addr(0)).inactive, 1, "TIME_WAIT lasts 120 s");
        lb.expire(at(122_000));
        assert!(lb.is_empty());
        lb.check_invariants().unwrap();
    }
}
