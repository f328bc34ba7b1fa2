//! VIPs and their backends: the vocabulary shared by Mesos ingestion, the replicated
//! records, the desired data-plane state and the CLI.
//!
//! Invariants: every ordering here is total and derived from the fields in declaration
//! order, so a [`VipSet`] iterates the same way on every node (protocol, then address with
//! IP VIPs before named ones, then port; backends by ip, port, agent, weight).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

/// Layer-4 protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a VIP lives: a literal address, or a name that every node maps to the same
/// address (see `named`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VipAddr {
    Ip(IpAddr),
    /// Fully qualified below the cluster domain: label host and framework, each turned
    /// into DNS labels, e.g. `api.hello-world.marathon`.
    Named(String),
}

/// One VIP: protocol, address or name, port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vip {
    pub protocol: Protocol,
    pub addr: VipAddr,
    pub port: u16,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            VipAddr::Ip(IpAddr::V4(ip)) => write!(f, "{} {}:{}", self.protocol, ip, self.port),
            VipAddr::Ip(IpAddr::V6(ip)) => write!(f, "{} [{}]:{}", self.protocol, ip, self.port),
            VipAddr::Named(name) => write!(f, "{} {}:{}", self.protocol, name, self.port),
        }
    }
}

/// One backend of a VIP: where connections go, which Mesos agent runs it, and its weight
/// (1 normal, 0 drain: open connections finish, no new ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
    pub agent: IpAddr,
    pub weight: u32,
}

/// The backends of one VIP: a set kept as a sorted vector without duplicates.
///
/// A `BTreeSet` allocates a whole B-tree leaf (about 500 bytes) even for one element, and
/// every node record holds one set per VIP; this holds exactly its elements. It iterates,
/// compares, hashes and prints like the `BTreeSet` it replaces, and its wire form is the
/// same: a length, then the elements in order. Decoding sorts and deduplicates, so a
/// peer's unsorted or repeated sequence becomes the set a `BTreeSet` would have built.
///
/// Inserting and removing shift the tail (O(n)); build large sets with `collect` or
/// `From<Vec<Backend>>`, which sort once.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backends(Vec<Backend>);

impl Backends {
    pub fn new() -> Backends {
        Backends(Vec::new())
    }

    /// Adds `backend`; false if it was already there.
    pub fn insert(&mut self, backend: Backend) -> bool {
        let appends = match self.0.last() {
            None => true,
            Some(last) => *last < backend,
        };
        if appends {
            self.0.push(backend);
            return true;
        }
        match self.0.binary_search(&backend) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, backend);
                true
            }
        }
    }

    /// Removes `backend`; false if it was not there.
    pub fn remove(&mut self, backend: &Backend) -> bool {
        match self.0.binary_search(backend) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, backend: &Backend) -> bool {
        self.0.binary_search(backend).is_ok()
    }

    /// In order.
    pub fn iter(&self) -> std::slice::Iter<'_, Backend> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&Backend> {
        self.0.first()
    }

    pub fn last(&self) -> Option<&Backend> {
        self.0.last()
    }

    /// Sorted, without duplicates.
    pub fn as_slice(&self) -> &[Backend] {
        &self.0
    }

    /// The elements of `self` not in `other`, in order (one merge walk).
    pub fn difference<'a>(&'a self, other: &'a Backends) -> impl Iterator<Item = &'a Backend> {
        let mut theirs = other.0.iter().peekable();
        self.0.iter().filter(move |mine| {
            while theirs.next_if(|t| *t < *mine).is_some() {}
            theirs.peek() != Some(mine)
        })
    }

    /// Frees spare capacity: call once a set is built and will be kept.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    /// Restores order and uniqueness after `from` elements were appended unchecked.
    fn normalize_from(&mut self, from: usize) {
        let start = from.saturating_sub(1);
        if self.0[start..].windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        self.0.sort_unstable();
        self.0.dedup();
    }
}

impl From<Vec<Backend>> for Backends {
    /// Sorts, deduplicates and drops spare capacity.
    fn from(mut backends: Vec<Backend>) -> Backends {
        backends.sort_unstable();
        backends.dedup();
        backends.shrink_to_fit();
        Backends(backends)
    }
}

impl<const N: usize> From<[Backend; N]> for Backends {
    fn from(backends: [Backend; N]) -> Backends {
        Backends::from(Vec::from(backends))
    }
}

impl FromIterator<Backend> for Backends {
    fn from_iter<I: IntoIterator<Item = Backend>>(iter: I) -> Backends {
        Backends::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<Backend> for Backends {
    fn extend<I: IntoIterator<Item = Backend>>(&mut self, iter: I) {
        let from = self.0.len();
        self.0.extend(iter);
        self.normalize_from(from);
    }
}

impl<'a> Extend<&'a Backend> for Backends {
    fn extend<I: IntoIterator<Item = &'a Backend>>(&mut self, iter: I) {
        self.extend(iter.into_iter().copied());
    }
}

impl<'a> IntoIterator for &'a Backends {
    type Item = &'a Backend;
    type IntoIter = std::slice::Iter<'a, Backend>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Backends {
    type Item = Backend;
    type IntoIter = std::vec::IntoIter<Backend>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Debug for Backends {
    /// As a `BTreeSet` prints: `{a, b}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl Serialize for Backends {
    /// A sequence, as serde writes a `BTreeSet`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Backends {
    /// Any sequence; sorted and deduplicated as a `BTreeSet` would be.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Backends, D::Error> {
        Vec::<Backend>::deserialize(deserializer).map(Backends::from)
    }
}

/// Every VIP with its backends, as extracted from one Mesos document or as reported in one
/// node's record. A VIP with no backends is not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipSet {
    pub vips: BTreeMap<Vip, Backends>,
}

impl VipSet {
    pub fn new() -> VipSet {
        VipSet::default()
    }

    /// One empty set shared by every holder that has nothing (most records carry no
    /// backends): a clone is a reference count, not an allocation per (node, origin) pair.
    /// `Arc::make_mut` on it copies, so a holder that fills it never changes the others'.
    pub fn shared_empty() -> Arc<VipSet> {
        static EMPTY: LazyLock<Arc<VipSet>> = LazyLock::new(Arc::default);
        EMPTY.clone()
    }

    /// Adds one backend to `vip`.
    pub fn insert(&mut self, vip: Vip, backend: Backend) {
        self.vips.entry(vip).or_default().insert(backend);
    }

    pub fn is_empty(&self) -> bool {
        self.vips.is_empty()
    }

    /// Number of (VIP, backend) pairs.
    pub fn backend_count(&self) -> usize {
        self.vips.values().map(Backends::len).sum()
    }

    /// Frees every set's spare capacity: call once a set is built and will be kept.
    pub fn shrink_to_fit(&mut self) {
        self.vips.values_mut().for_each(Backends::shrink_to_fit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    /// Few distinct values, so inserts and removes hit existing elements often.
    fn backend(ip: u8, port: u8, weight: u8) -> Backend {
        Backend {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip % 4)),
            port: u16::from(port % 3),
            agent: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            weight: u32::from(weight % 2),
        }
    }

    fn any_backend() -> impl Strategy<Value = Backend> {
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(i, p, w)| backend(i, p, w))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Backend),
        Remove(Backend),
        Extend(Vec<Backend>),
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any_backend().prop_map(Op::Insert),
            any_backend().prop_map(Op::Remove),
            proptest::collection::vec(any_backend(), 0..6).prop_map(Op::Extend),
        ]
    }

    fn agrees(set: &Backends, model: &BTreeSet<Backend>) {
        assert_eq!(set.len(), model.len());
        assert_eq!(set.is_empty(), model.is_empty());
        assert!(set.iter().eq(model.iter()));
        assert_eq!(set.first(), model.first());
        assert_eq!(set.last(), model.last());
        assert_eq!(format!("{set:?}"), format!("{model:?}"));
        assert_eq!(
            postcard::to_allocvec(set).unwrap(),
            postcard::to_allocvec(model).unwrap()
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec(any_op(), 0..40)) {
            let mut set = Backends::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(b) => prop_assert_eq!(set.insert(b), model.insert(b)),
                    Op::Remove(b) => prop_assert_eq!(set.remove(&b), model.remove(&b)),
                    Op::Extend(bs) => {
                        set.extend(bs.iter().copied());
                        model.extend(bs);
                    }
                }
                agrees(&set, &model);
                for ip in 0..4 {
                    for port in 0..3 {
                        for weight in 0..2 {
                            let b = backend(ip, port, weight);
                            prop_assert_eq!(set.contains(&b), model.contains(&b));
                        }
                    }
                }
            }
        }

        #[test]
        fn difference_and_order_match_btreeset(
            a in proptest::collection::vec(any_backend(), 0..12),
            b in proptest::collection::vec(any_backend(), 0..12),
        ) {
            let (sa, sb): (Backends, Backends) = (a.iter().copied().collect(), b.iter().copied().collect());
            let (ma, mb): (BTreeSet<Backend>, BTreeSet<Backend>) = (a.into_iter().collect(), b.into_iter().collect());
            agrees(&sa, &ma);
            prop_assert!(sa.difference(&sb).eq(ma.difference(&mb)));
            prop_assert_eq!(sa.cmp(&sb), ma.cmp(&mb));
            prop_assert_eq!(sa == sb, ma == mb);
        }

        /// Any sequence on the wire, sorted or not, repeated or not, decodes to the set a
        /// `BTreeSet` decodes it to, and re-encodes to the same bytes.
        #[test]
        fn decodes_any_sequence_like_btreeset(seq in proptest::collection::vec(any_backend(), 0..12)) {
            let wire = postcard::to_allocvec(&seq).unwrap();
            let set: Backends = postcard::from_bytes(&wire).unwrap();
            let model: BTreeSet<Backend> = postcard::from_bytes(&wire).unwrap();
            agrees(&set, &model);
            let back: Backends = postcard::from_bytes(&postcard::to_allocvec(&set).unwrap()).unwrap();
            prop_assert_eq!(back, set);
        }
    }

    #[test]
    fn unsorted_duplicated_wire_decodes_sorted_and_deduplicated() {
        let (a, b, c) = (backend(1, 0, 1), backend(2, 0, 1), backend(3, 0, 1));
        let wire = postcard::to_allocvec(&vec![c, a, c, b, a]).unwrap();
        let set: Backends = postcard::from_bytes(&wire).unwrap();
        assert_eq!(set.as_slice(), &[a, b, c]);
        assert_eq!(
            postcard::to_allocvec(&set).unwrap(),
            postcard::to_allocvec(&vec![a, b, c]).unwrap()
        );
    }

    #[test]
    fn vipset_wire_form_is_unchanged() {
        let vip = |port| Vip {
            protocol: Protocol::Tcp,
            addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))),
            port,
        };
        let mut set = VipSet::new();
        let mut model: BTreeMap<Vip, BTreeSet<Backend>> = BTreeMap::new();
        for (port, b) in [
            (80, backend(2, 1, 1)),
            (80, backend(1, 0, 0)),
            (443, backend(3, 2, 1)),
        ] {
            set.insert(vip(port), b);
            model.entry(vip(port)).or_default().insert(b);
        }
        let wire = postcard::to_allocvec(&set).unwrap();
        assert_eq!(wire, postcard::to_allocvec(&model).unwrap());
        assert_eq!(postcard::from_bytes::<VipSet>(&wire).unwrap(), set);
        assert_eq!(set.backend_count(), 3);
    }
}
