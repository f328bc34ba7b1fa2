//! What the agent's DNS answers from: the named VIPs whose address the local kernel holds,
//! by full name (`web.marathon.l4lb.thisdcos.directory`).
//!
//! Invariants:
//! - A table is immutable; a new one is built whenever the names or the committed kernel
//!   state change, and swapped in whole, so a query never sees half an update.
//! - A name is in the table only while the local kernel holds a service at its address:
//!   it appears once the kernel has its VIP and disappears with it (per address family).
//! - Names are lower case without the trailing dot; lookups lower-case the question.
//! - The map is only looked up, never iterated, so its order reaches no output.

use crate::kernel::KernelState;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default zone of named VIPs, as dcos-dns served it.
pub const DEFAULT_ZONE: &str = "l4lb.thisdcos.directory";

/// The addresses of one name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addrs {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// The names of one zone.
#[derive(Clone, Debug, Default)]
pub struct DnsTable {
    zone: String,
    names: HashMap<String, Addrs>,
    /// Counts the tables built (the SOA serial).
    serial: u32,
}

/// `zone` lower-cased, without surrounding dots.
pub fn normalize_zone(zone: &str) -> String {
    zone.trim_matches('.').to_ascii_lowercase()
}

impl DnsTable {
    /// The table of `zone` for `names` (name under the zone, e.g. `web.marathon`, with its
    /// assigned addresses), keeping the addresses `kernel` holds a service at.
    pub fn build<'a>(
        zone: &str,
        names: impl IntoIterator<Item = (&'a str, Option<Ipv4Addr>, Option<Ipv6Addr>)>,
        kernel: &KernelState,
        serial: u32,
    ) -> DnsTable {
        let zone = normalize_zone(zone);
        let held: BTreeSet<IpAddr> = kernel.services.keys().map(|s| s.addr.ip()).collect();
        let mut table = HashMap::new();
        for (name, v4, v6) in names {
            let addrs = Addrs {
                v4: v4.filter(|ip| held.contains(&IpAddr::V4(*ip))),
                v6: v6.filter(|ip| held.contains(&IpAddr::V6(*ip))),
            };
            if addrs.v4.is_some() || addrs.v6.is_some() {
                table.insert(format!("{}.{zone}", name.to_ascii_lowercase()), addrs);
            }
        }
        DnsTable {
            zone,
            names: table,
            serial,
        }
    }

    /// An empty table of `zone`.
    pub fn empty(zone: &str) -> DnsTable {
        DnsTable::build(zone, std::iter::empty(), &KernelState::default(), 0)
    }

    /// The zone, lower case, without dots at either end.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether `name` (lower case, no trailing dot) is the zone or inside it.
    pub fn in_zone(&self, name: &str) -> bool {
        name == self.zone
            || (name.len() > self.zone.len()
                && name.ends_with(&self.zone)
                && name.as_bytes()[name.len() - self.zone.len() - 1] == b'.')
    }

    /// The addresses of `name` (lower case, no trailing dot).
    pub fn lookup(&self, name: &str) -> Option<Addrs> {
        self.names.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Service;
    use crate::Protocol;
    use std::sync::Arc;

    #[test]
    fn a_name_is_served_only_while_the_kernel_holds_its_address() {
        let v4: Ipv4Addr = "11.1.2.3".parse().unwrap();
        let v6: Ipv6Addr = "fd01:c::7".parse().unwrap();
        let names = [
            ("web.marathon", Some(v4), Some(v6)),
            ("db.marathon", Some("11.9.9.9".parse().unwrap()), None),
        ];
        let mut kernel = KernelState::default();
        let table = DnsTable::build(".L4LB.thisdcos.directory.", names, &kernel, 1);
        assert_eq!(table.zone(), "l4lb.thisdcos.directory");
        assert!(table.is_empty(), "nothing in the kernel yet");
        kernel.services.insert(
            Service::new(Protocol::Tcp, std::net::SocketAddr::new(IpAddr::V4(v4), 80)),
            Arc::default(),
        );
        let table = DnsTable::build(DEFAULT_ZONE, names, &kernel, 2);
        assert_eq!(
            table.lookup("web.marathon.l4lb.thisdcos.directory"),
            Some(Addrs {
                v4: Some(v4),
                v6: None
            })
        );
        assert_eq!(table.lookup("db.marathon.l4lb.thisdcos.directory"), None);
        assert!(table.in_zone("l4lb.thisdcos.directory"));
        assert!(table.in_zone("x.l4lb.thisdcos.directory"));
        assert!(!table.in_zone("xl4lb.thisdcos.directory"));
        assert!(!table.in_zone("thisdcos.directory"));
    }
}
