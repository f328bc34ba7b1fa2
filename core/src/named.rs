//! Addresses for named VIPs: the same name gets the same address on every node.
//!
//! A name hashes (xxh3) to a first-choice address in 11.0.0.0/8 and in fd01:c::/64. Names
//! are placed in byte order of the name; each takes the first address of its probe sequence
//! (the first choice, then the next addresses, wrapping inside the prefix) that is neither
//! taken by a smaller name nor reserved (a literal VIP inside the prefix). So of the names
//! that want one address the smallest keeps it, and the answer depends only on the set of
//! names and literals, never on the order they were learnt in.
//!
//! Invariants: every assigned address is inside its prefix, is not the prefix's first or
//! last address, and is assigned to exactly one name; reserved addresses are never
//! assigned. A name keeps its address while the names before it in byte order and the
//! reserved set do not change (a new smaller name that collides can move it: rare, since
//! the IPv4 space holds 2^24 addresses).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The IPv4 prefix of named VIPs: 11.0.0.0/8.
pub const NAMED_V4_PREFIX: Ipv4Addr = Ipv4Addr::new(11, 0, 0, 0);
/// The IPv6 prefix of named VIPs: fd01:c::/64.
pub const NAMED_V6_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, 0);

const V4_HOSTS: u64 = 1 << 24;
const V6_SEED: u64 = 0x6e616d6564763600;

/// Whether `ip` is inside 11.0.0.0/8.
pub fn in_v4_prefix(ip: Ipv4Addr) -> bool {
    ip.octets()[0] == 11
}

/// Whether `ip` is inside fd01:c::/64.
pub fn in_v6_prefix(ip: Ipv6Addr) -> bool {
    ip.segments()[..4] == NAMED_V6_PREFIX.segments()[..4]
}

/// The IPv4 address `name` wants first (what it gets unless a smaller name or a literal
/// VIP holds it): two names collide when these are equal.
pub fn first_choice_v4(name: &str) -> Ipv4Addr {
    v4_host(xxh3_64_with_seed(name.as_bytes(), 0) % V4_HOSTS)
}

/// The address of every name, for one set of names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    v4: BTreeMap<String, Ipv4Addr>,
    v6: BTreeMap<String, Ipv6Addr>,
}

impl NameTable {
    /// Places `names` (any order, duplicates ignored) around the `reserved` literals.
    pub fn assign<'a>(
        names: impl IntoIterator<Item = &'a str>,
        reserved4: &BTreeSet<Ipv4Addr>,
        reserved6: &BTreeSet<Ipv6Addr>,
    ) -> NameTable {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let mut table = NameTable::default();
        let mut taken4: BTreeSet<Ipv4Addr> = reserved4.clone();
        let mut taken6: BTreeSet<Ipv6Addr> = reserved6.clone();
        for name in names {
            let first = u64::from(u32::from(first_choice_v4(name)) & 0x00ff_ffff);
            let v4 = (0..V4_HOSTS)
                .map(|i| v4_host((first + i) % V4_HOSTS))
                .find(|ip| usable_v4(*ip) && !taken4.contains(ip));
            if let Some(ip) = v4 {
                taken4.insert(ip);
                table.v4.insert(name.to_owned(), ip);
            }
            let first = xxh3_64_with_seed(name.as_bytes(), V6_SEED);
            // 2^64 hosts: the probe always ends; bounded anyway so that it provably does.
            let v6 = (0..u64::from(u32::MAX))
                .map(|i| v6_host(first.wrapping_add(i)))
                .find(|ip| usable_v6(*ip) && !taken6.contains(ip));
            if let Some(ip) = v6 {
                taken6.insert(ip);
                table.v6.insert(name.to_owned(), ip);
            }
        }
        table
    }

    /// The IPv4 address of `name` (`None`: not in the table).
    pub fn v4(&self, name: &str) -> Option<Ipv4Addr> {
        self.v4.get(name).copied()
    }

    /// The IPv6 address of `name` (`None`: not in the table).
    pub fn v6(&self, name: &str) -> Option<Ipv6Addr> {
        self.v6.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.v4.len()
    }

    /// Every name with its addresses, in byte order of the name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Option<Ipv4Addr>, Option<Ipv6Addr>)> {
        self.v4
            .iter()
            .map(|(name, v4)| (name.as_str(), Some(*v4), self.v6.get(name).copied()))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty()
    }

    /// Names whose addresses differ between `self` and `other` (in either family, or
    /// present in one table only), in byte order.
    pub fn changed_names<'a>(&'a self, other: &'a NameTable) -> BTreeSet<&'a str> {
        let mut changed = BTreeSet::new();
        for (name, ip) in &self.v4 {
            if other.v4.get(name) != Some(ip) || other.v6.get(name) != self.v6.get(name) {
                changed.insert(name.as_str());
            }
        }
        for name in other.v4.keys() {
            if !self.v4.contains_key(name) {
                changed.insert(name.as_str());
            }
        }
        changed
    }
}

fn v4_host(offset: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NAMED_V4_PREFIX) | offset as u32)
}

fn usable_v4(ip: Ipv4Addr) -> bool {
    let host = u32::from(ip) & 0x00ff_ffff;
    host != 0 && host != 0x00ff_ffff
}

fn v6_host(interface: u64) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(NAMED_V6_PREFIX) | u128::from(interface))
}

fn usable_v6(ip: Ipv6Addr) -> bool {
    let host = u128::from(ip) as u64;
    host != 0 && host != u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(names: &[&str]) -> NameTable {
        NameTable::assign(names.iter().copied(), &BTreeSet::new(), &BTreeSet::new())
    }

    #[test]
    fn same_names_same_addresses_in_any_order() {
        let a = assign(&["web.marathon", "api.hello-world.marathon", "merp.marathon"]);
        let b = assign(&["merp.marathon", "web.marathon", "api.hello-world.marathon"]);
        assert_eq!(a, b);
        let ip = a.v4("web.marathon").unwrap();
        assert!(in_v4_prefix(ip));
        assert!(in_v6_prefix(a.v6("web.marathon").unwrap()));
        assert_ne!(ip, a.v4("merp.marathon").unwrap());
    }

    #[test]
    fn a_reserved_literal_pushes_the_name_onward() {
        let free = assign(&["web.marathon"]);
        let wanted = free.v4("web.marathon").unwrap();
        let reserved = BTreeSet::from([wanted]);
        let moved = NameTable::assign(["web.marathon"], &reserved, &BTreeSet::new());
        let got = moved.v4("web.marathon").unwrap();
        assert_ne!(got, wanted);
        assert!(in_v4_prefix(got));
    }

    #[test]
    fn many_names_get_distinct_usable_addresses() {
        let names: Vec<String> = (0..5000).map(|i| format!("svc-{i}.marathon")).collect();
        let table = NameTable::assign(
            names.iter().map(String::as_str),
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        let v4: BTreeSet<Ipv4Addr> = names.iter().map(|n| table.v4(n).unwrap()).collect();
        let v6: BTreeSet<Ipv6Addr> = names.iter().map(|n| table.v6(n).unwrap()).collect();
        assert_eq!(v4.len(), names.len());
        assert_eq!(v6.len(), names.len());
        assert!(v4.iter().all(|ip| in_v4_prefix(*ip) && usable_v4(*ip)));
    }

    #[test]
    fn changed_names_lists_moves_and_departures() {
        let a = assign(&["a", "b"]);
        let b = assign(&["b", "c"]);
        let changed: Vec<&str> = a.changed_names(&b).into_iter().collect();
        assert_eq!(changed, vec!["a", "c"]);
        assert!(a.changed_names(&a).is_empty());
    }
}
