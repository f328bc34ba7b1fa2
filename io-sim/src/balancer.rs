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
//! - the service's destination list is in the kernel's order: a destination the agent
//!   adds goes to the front (`list_add` at the head), so the newest comes first. With
//!   short connections every destination carries about the same overhead, and `wlc`
//!   walks this list round robin; ties decide where the walk is.
//!
//! The balancer follows the kernel table through [`Balancer::sync`]: it sees the table's
//! contents after each change, and applies the difference as the agent's operations would
//! (removals, weight changes, then additions in address order, each to the front).
//!
//! Invariant: each destination's counters equal the number of live entries bound to it in
//! each class (checked by [`Balancer::check_invariants`]); the list holds each destination
//! of the table once.

use minuteman_core::kernel::Destinations;
use minuteman_core::Time;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
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

/// One destination of the service's list.
#[derive(Copy, Clone, Debug)]
struct Listed {
    slot: usize,
    weight: u32,
}

/// One host's IPVS service (its destination list), connection table and scheduler.
#[derive(Clone, Debug, Default)]
pub struct Balancer {
    /// The destination list, newest first (keyed by descending insertion number).
    list: BTreeMap<Reverse<u64>, Listed>,
    /// Lookup only: each listed destination's insertion number.
    listed: FxHashMap<SocketAddr, u64>,
    next_insert: u64,
    /// Lookup only: every destination ever seen and its counters' slot (kept after a
    /// removal, as the kernel's trash list keeps them).
    slots: FxHashMap<SocketAddr, usize>,
    counters: Vec<(SocketAddr, Counts)>,
    next_id: u64,
    entries: BTreeMap<ConnId, Entry>,
    /// `(expiry, id)` of every entry: the table's timer wheel.
    expiry: BTreeSet<(Time, ConnId)>,
}

impl Balancer {
    pub fn new() -> Balancer {
        Balancer::default()
    }

    /// Makes the service's list follow `table` (`None`: the service does not exist).
    pub fn sync(&mut self, table: Option<&Destinations>) {
        let empty = Destinations::new();
        let table = table.unwrap_or(&empty);
        let listed = &mut self.listed;
        self.list.retain(|_, l| {
            let dest = self.counters[l.slot].0;
            match table.get(&dest) {
                Some(&weight) => {
                    l.weight = weight;
                    true
                }
                None => {
                    listed.remove(&dest);
                    false
                }
            }
        });
        for (&dest, &weight) in table {
            if self.listed.contains_key(&dest) {
                continue;
            }
            let slot = self.slot(dest);
            self.next_insert += 1;
            self.listed.insert(dest, self.next_insert);
            self.list
                .insert(Reverse(self.next_insert), Listed { slot, weight });
        }
    }

    fn slot(&mut self, dest: SocketAddr) -> usize {
        let counters = &mut self.counters;
        *self.slots.entry(dest).or_insert_with(|| {
            counters.push((dest, Counts::default()));
            counters.len() - 1
        })
    }

    /// The service's destinations in list order, with their weights.
    pub fn destinations(&self) -> impl Iterator<Item = (SocketAddr, u32)> + '_ {
        self.list
            .values()
            .map(|l| (self.counters[l.slot].0, l.weight))
    }

    /// The counters of `dest` (zero when it has no entry).
    pub fn counts(&self, dest: &SocketAddr) -> Counts {
        self.slots
            .get(dest)
            .map_or_else(Counts::default, |&s| self.counters[s].1)
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `wlc` choice at `now` among the listed destinations for which `usable` holds
    /// (the others count as weight 0), or `None` when none has a positive weight.
    pub fn pick(&mut self, now: Time, usable: impl Fn(&SocketAddr) -> bool) -> Option<SocketAddr> {
        self.expire(now);
        let mut least: Option<(usize, u64, u64)> = None;
        for l in self.list.values() {
            let (dest, counts) = &self.counters[l.slot];
            if l.weight == 0 || !usable(dest) {
                continue;
            }
            let overhead = counts.overhead();
            let weight = u64::from(l.weight);
            // overhead / weight < least_overhead / least_weight, without division.
            let better = match least {
                None => true,
                Some((_, least_overhead, least_weight)) => {
                    u128::from(least_overhead) * u128::from(weight)
                        > u128::from(overhead) * u128::from(least_weight)
                }
            };
            if better {
                least = Some((l.slot, overhead, weight));
            }
        }
        least.map(|(slot, _, _)| self.counters[slot].0)
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
        let slot = self.slot(dest);
        self.counters[slot].1.add(entry.state);
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
        let counts = &mut self.counters[self.slots[&entry.dest]].1;
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
            let counts = &mut self.counters[self.slots[&entry.dest]].1;
            counts.remove(entry.state);
        }
    }

    /// Recounts every destination from the entries and compares with the counters.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut recount: BTreeMap<SocketAddr, Counts> = BTreeMap::new();
        for entry in self.entries.values() {
            recount.entry(entry.dest).or_default().add(entry.state);
        }
        for (dest, counts) in &self.counters {
            let expected = recount.get(dest).copied().unwrap_or_default();
            if *counts != expected {
                return Err(format!("{dest}: counters {counts:?}, entries {expected:?}"));
            }
        }
        if self.expiry.len() != self.entries.len() {
            return Err("expiry index and entries differ in size".into());
        }
        if self.listed.len() != self.list.len() {
            return Err("list and its index differ in size".into());
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

    fn table(dests: &[(u16, u32)]) -> Destinations {
        dests.iter().map(|&(i, w)| (addr(i), w)).collect()
    }

    fn index(d: SocketAddr) -> u16 {
        d.port() - 20_000
    }

    #[test]
    fn newest_first_and_load_spreads_round_robin() {
        let mut lb = Balancer::new();
        lb.sync(Some(&table(&[(0, 1), (1, 1)])));
        lb.sync(Some(&table(&[(0, 1), (1, 1), (2, 1), (3, 1)])));
        let order: Vec<u16> = lb.destinations().map(|(d, _)| index(d)).collect();
        assert_eq!(order, [3, 2, 1, 0], "each addition goes to the front");
        let mut picked = Vec::new();
        for _ in 0..8 {
            let d = lb.pick(at(0), |_| true).unwrap();
            let id = lb.open(at(0), d);
            lb.established(at(0), id);
            lb.closed(at(0), id);
            picked.push(index(d));
        }
        // Every closed connection stays in TIME_WAIT (inactive): equal load, list order.
        assert_eq!(picked, [3, 2, 1, 0, 3, 2, 1, 0]);
        lb.check_invariants().unwrap();
    }

    #[test]
    fn an_active_connection_weighs_256_inactive_ones() {
        let mut lb = Balancer::new();
        lb.sync(Some(&table(&[(0, 1)])));
        lb.sync(Some(&table(&[(0, 1), (1, 1)])));
        let busy = lb.open(at(0), addr(1));
        lb.established(at(0), busy);
        for _ in 0..255 {
            lb.open(at(0), addr(0));
        }
        // 256 vs 255: the second in the list is lighter.
        assert_eq!(lb.pick(at(0), |_| true), Some(addr(0)));
        lb.open(at(0), addr(0));
        // 256 vs 256: the tie goes to the first.
        assert_eq!(lb.pick(at(0), |_| true), Some(addr(1)));
        lb.check_invariants().unwrap();
    }

    #[test]
    fn weights_scale_the_share_and_zero_never_wins() {
        let mut lb = Balancer::new();
        lb.sync(Some(&table(&[(0, 3), (1, 1), (2, 0)])));
        let mut share = [0u32; 3];
        for _ in 0..400 {
            let d = lb.pick(at(0), |_| true).unwrap();
            let id = lb.open(at(0), d);
            lb.established(at(0), id);
            share[usize::from(index(d))] += 1;
        }
        assert_eq!(share, [300, 100, 0]);
        assert_eq!(lb.pick(at(0), |d| *d == addr(2)), None);
        assert_eq!(lb.pick(at(0), |d| *d == addr(1)), Some(addr(1)));
        lb.sync(None);
        assert_eq!(lb.pick(at(0), |_| true), None);
    }

    #[test]
    fn a_removed_destination_keeps_its_counters_and_comes_back_first() {
        let mut lb = Balancer::new();
        lb.sync(Some(&table(&[(0, 1), (1, 1)])));
        lb.open(at(0), addr(0));
        lb.sync(Some(&table(&[(1, 1)])));
        assert_eq!(
            lb.counts(&addr(0)).inactive,
            1,
            "entries outlive the destination"
        );
        assert_eq!(lb.pick(at(0), |_| true), Some(addr(1)));
        lb.sync(Some(&table(&[(0, 2), (1, 1)])));
        let order: Vec<(u16, u32)> = lb.destinations().map(|(d, w)| (index(d), w)).collect();
        assert_eq!(order, [(0, 2), (1, 1)]);
        lb.check_invariants().unwrap();
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
