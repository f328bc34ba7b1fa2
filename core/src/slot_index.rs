//! The record store's index from a node address to its slot, keeping only slot numbers.
//!
//! Every node of a cluster holds a slot per known address, so this table has an entry per
//! (node, address) pair. An address is 32 bytes in memory (`SocketAddr`) and the slot table
//! holds it already; a hash map keyed by address held it a second time, 36 bytes a bucket
//! against 4 here (about 66 bytes per pair at the load a hash table keeps). A lookup
//! compares the address found in the slot the bucket names, one read into the slot table
//! that the caller's next step (the record, the epoch) makes anyway.
//!
//! Invariants: the caller gives every call the same slot table, in which each indexed slot
//! holds the address it was inserted under; an address is indexed at most once. The
//! index is never iterated (lookup only), so its order cannot reach an output.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::net::SocketAddr;

/// Address → slot, for the addresses a slot table holds (see the module doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    table: HashTable<u32>,
}

fn hash(addr: &SocketAddr) -> u64 {
    FxBuildHasher.hash_one(addr)
}

impl SlotIndex {
    /// How many addresses are indexed.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot of `addr`; `addr_of` gives the address a slot holds.
    pub(crate) fn get(
        &self,
        addr: &SocketAddr,
        addr_of: impl Fn(u32) -> SocketAddr,
    ) -> Option<u32> {
        self.table
            .find(hash(addr), |&slot| addr_of(slot) == *addr)
            .copied()
    }

    /// Indexes `slot` under `addr`, which must not be indexed yet (`addr_of(slot)` is
    /// `addr` already).
    pub(crate) fn insert(
        &mut self,
        addr: &SocketAddr,
        slot: u32,
        addr_of: impl Fn(u32) -> SocketAddr,
    ) {
        debug_assert!(self.get(addr, &addr_of).is_none(), "{addr} indexed twice");
        self.table
            .insert_unique(hash(addr), slot, |&s| hash(&addr_of(s)));
    }

    /// Makes room for `more` addresses beyond those indexed.
    pub(crate) fn reserve(&mut self, more: usize, addr_of: impl Fn(u32) -> SocketAddr) {
        self.table.reserve(more, |&s| hash(&addr_of(s)));
    }

    /// Forgets `addr` (before its slot holds another address).
    pub(crate) fn remove(&mut self, addr: &SocketAddr, addr_of: impl Fn(u32) -> SocketAddr) {
        if let Ok(entry) = self
            .table
            .find_entry(hash(addr), |&slot| addr_of(slot) == *addr)
        {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 61420))
    }

    /// Inserts, lookups and removals agree with a map, through rehashes as the table grows.
    #[test]
    fn agrees_with_a_map_through_growth_and_removal() {
        let mut slots: Vec<SocketAddr> = Vec::new();
        let mut index = SlotIndex::default();
        for i in 0..5_000 {
            slots.push(addr(i));
            index.insert(&addr(i), i, |s| slots[s as usize]);
        }
        for i in (0..5_000).step_by(3) {
            index.remove(&addr(i), |s| slots[s as usize]);
        }
        assert_eq!(index.len(), 5_000 - 5_000_usize.div_ceil(3));
        for i in 0..5_000 {
            let want = (i % 3 != 0).then_some(i);
            assert_eq!(
                index.get(&addr(i), |s| slots[s as usize]),
                want,
                "address {i}"
            );
        }
        // A freed slot reused for a new address.
        slots[0] = addr(9_999);
        index.insert(&addr(9_999), 0, |s| slots[s as usize]);
        assert_eq!(index.get(&addr(9_999), |s| slots[s as usize]), Some(0));
        assert_eq!(index.get(&addr(0), |s| slots[s as usize]), None);
    }
}
