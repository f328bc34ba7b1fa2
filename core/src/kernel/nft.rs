//! The desired [`KernelState`] rendered as nftables transactions (`nft -f -` input): once
//! in full ([`render_full`]) and as deltas ([`render_ops`]), in the knftables model (one
//! private table, every change one atomic transaction, the committed state kept by the
//! caller).
//!
//! # The table
//!
//! One table of family `inet` (default name `minuteman`, see [`NftConfig`]), so one set of
//! hook chains serves IPv4 and IPv6 (`inet` NAT needs Linux ≥ 5.2):
//!
//! - verdict maps `services4` (`type inet_proto . ipv4_addr . inet_service : verdict`) and
//!   `services6` (the same with `ipv6_addr`), one element per service:
//!   `tcp . 10.0.0.1 . 80 : goto svc_tcp_10_0_0_1_80`;
//! - hook chains `prerouting` (nat, priority -100: traffic from containers and other hosts)
//!   and `output` (nat, priority -100: clients on this host), each looking the packet's
//!   `meta l4proto . daddr . th dport` up in both maps;
//! - one chain per service (see [`chain_name`]) with a single rule: weighted DNAT, `meta
//!   l4proto tcp dnat ip to numgen random mod TOTAL map { 0 : 10.1.0.1 . 80, 1-3 :
//!   10.1.0.2 . 80 }`, where each destination with a positive weight `w` owns `w`
//!   consecutive values of `0..TOTAL` (weights summing past `u32::MAX` are scaled down,
//!   every positive weight keeping at least one value). Destinations of weight 0 get no
//!   range: they take no new connection, and their existing connections carry on through
//!   conntrack (nat chains only see a connection's first packet), which is IPVS's drain.
//!   Destinations of the other address family are skipped (IPVS refuses them too);
//! - masquerade (IPVS masquerade forwarding plus the SNAT rule the IPVS data plane adds):
//!   the service rule sets the [`NftConfig::masquerade_mark`] bit and a `postrouting` nat
//!   chain (priority 100) clears it and masquerades, so replies come back through this host
//!   even when client and backend share a bridge;
//! - a service without any destination of positive weight never DNATs to nothing: its rule
//!   sets the [`NftConfig::reject_mark`] bit and the filter chains `reject_forward` and
//!   `reject_output` (priority 0) reject the connection (TCP reset, ICMP port unreachable
//!   otherwise), so clients fail at once instead of timing out (nft cannot reject in
//!   prerouting itself). Without a reject mark the rule is `drop`.
//!
//! # Invariants
//!
//! - Deterministic: output depends only on the inputs, in `BTreeMap` order; no hashing.
//! - Total: no input panics; names are sanitized so no input can inject nft syntax.
//! - [`render_full`] is idempotent: `add table` + `delete table` + the whole definition, so
//!   it runs the same on an empty ruleset and over any earlier version of the table.
//! - [`render_ops`] touches only the services named by the ops: `add chain` + `add rule` +
//!   `add element` for a new one, `flush chain` + `add rule` for a changed one (its map
//!   element stays), `delete element` + `flush chain` + `delete chain` for a gone one. It
//!   is correct when the ops are `diff(applied, desired)` and the table holds `applied`;
//!   otherwise nft refuses the transaction as a whole and the caller falls back to
//!   [`render_full`].
//! - Services on an IPv6 address with a scope id or flow label are not representable in
//!   nft (the key has no room for them; a VIP is never link-scoped) and are left out of
//!   both renderings.
//! - Chain names are a function of the service alone, unique per representable service,
//!   and at most 46 bytes (the kernel's limit is 256).

use super::{Destinations, KernelState, Op, Service};
use crate::vip::Protocol;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Default name of minuteman's private table.
pub const DEFAULT_TABLE: &str = "minuteman";
/// Default packet-mark bit that asks `postrouting` to masquerade.
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x0010_0000;
/// Default packet-mark bit that asks the filter chains to reject.
pub const DEFAULT_REJECT_MARK: u32 = 0x0020_0000;
/// The verdict map of IPv4 services.
pub const MAP4: &str = "services4";
/// The verdict map of IPv6 services.
pub const MAP6: &str = "services6";
/// Longest table name [`NftConfig::table_name`] keeps.
pub const MAX_TABLE_NAME: usize = 64;

/// How the table is named and marked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftConfig {
    /// Name of the private table (family `inet`). Sanitized by [`NftConfig::table_name`].
    pub table: String,
    /// Mark bits set on connections to masquerade; `None` or 0: no masquerade.
    pub masquerade_mark: Option<u32>,
    /// Mark bits set on connections to reject; `None` or 0: drop instead. Ignored (drop)
    /// when it overlaps the masquerade mark.
    pub reject_mark: Option<u32>,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            table: DEFAULT_TABLE.to_owned(),
            masquerade_mark: Some(DEFAULT_MASQUERADE_MARK),
            reject_mark: Some(DEFAULT_REJECT_MARK),
        }
    }
}

impl NftConfig {
    /// The table name as rendered: ASCII letters, digits and `_` kept, any other character
    /// replaced by `_`, prefixed with `t_` unless it starts with a letter, cut to
    /// [`MAX_TABLE_NAME`] bytes; [`DEFAULT_TABLE`] when empty.
    pub fn table_name(&self) -> String {
        if self.table.is_empty() {
            return DEFAULT_TABLE.to_owned();
        }
        let mut name = String::with_capacity(self.table.len().min(MAX_TABLE_NAME));
        if !self.table.starts_with(|c: char| c.is_ascii_alphabetic()) {
            name.push_str("t_");
        }
        for c in self.table.chars() {
            if name.len() >= MAX_TABLE_NAME {
                break;
            }
            name.push(if c.is_ascii_alphanumeric() { c } else { '_' });
        }
        name
    }

    /// The masquerade mark in force, if any.
    pub fn effective_masquerade_mark(&self) -> Option<u32> {
        self.masquerade_mark.filter(|&m| m != 0)
    }

    /// The reject mark in force, if any: nonzero and disjoint from the masquerade mark.
    pub fn effective_reject_mark(&self) -> Option<u32> {
        let masquerade = self.effective_masquerade_mark().unwrap_or(0);
        self.reject_mark.filter(|&m| m != 0 && m & masquerade == 0)
    }
}

/// The chain of one service: `svc_tcp_10_0_0_1_80` for IPv4; for IPv6 the 32 hex digits
/// of the address, `svc_udp_fd01000c000000000000000000000001_53`. Injective over
/// representable services, at most 46 bytes.
pub fn chain_name(service: &Service) -> String {
    let mut name = String::with_capacity(46);
    name.push_str("svc_");
    name.push_str(service.protocol.as_str());
    name.push('_');
    match service.addr.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            let _ = write!(name, "{a}_{b}_{c}_{d}");
        }
        IpAddr::V6(ip) => {
            let _ = write!(name, "{:032x}", u128::from(ip));
        }
    }
    let _ = write!(name, "_{}", service.addr.port());
    name
}

/// Whether nft can hold `service`: every IPv4 service, IPv6 ones without scope id or flow
/// label.
pub fn representable(service: &Service) -> bool {
    match service.addr {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(addr) => addr.scope_id() == 0 && addr.flowinfo() == 0,
    }
}

/// The whole table for `state`, as one idempotent transaction.
pub fn render_full(state: &KernelState, config: &NftConfig) -> String {
    let table = config.table_name();
    let marks = Marks::of(config);
    let mut out = String::with_capacity(256 + state.services.len() * 256);
    let _ = writeln!(out, "add table inet {table}");
    let _ = writeln!(out, "delete table inet {table}");
    let _ = writeln!(out, "add table inet {table}");

    let services: Vec<(&Service, String)> = state
        .services
        .iter()
        .filter(|(service, _)| representable(service))
        .map(|(service, dests)| {
            let chain = chain_name(service);
            let _ = writeln!(out, "add chain inet {table} {chain}");
            service_rule(&mut out, &table, &chain, service, dests, marks);
            (service, chain)
        })
        .collect();

    for (map, v4, ty) in [(MAP4, true, "ipv4_addr"), (MAP6, false, "ipv6_addr")] {
        let _ = writeln!(
            out,
            "add map inet {table} {map} {{ type inet_proto . {ty} . inet_service : verdict; }}"
        );
        let mut members = services
            .iter()
            .filter(|(service, _)| service.addr.is_ipv4() == v4)
            .peekable();
        if members.peek().is_some() {
            let _ = writeln!(out, "add element inet {table} {map} {{");
            for (service, chain) in members {
                out.push('\t');
                element(&mut out, service, Some(chain));
                out.push_str(",\n");
            }
            out.push_str("}\n");
        }
    }

    for hook in ["prerouting", "output"] {
        let _ = writeln!(
            out,
            "add chain inet {table} {hook} {{ type nat hook {hook} priority -100; policy accept; }}"
        );
        let _ = writeln!(
            out,
            "add rule inet {table} {hook} meta l4proto . ip daddr . th dport vmap @{MAP4}"
        );
        let _ = writeln!(
            out,
            "add rule inet {table} {hook} meta l4proto . ip6 daddr . th dport vmap @{MAP6}"
        );
    }
    if let Some(m) = marks.masquerade {
        let _ = writeln!(
            out,
            "add chain inet {table} postrouting {{ type nat hook postrouting priority 100; policy accept; }}"
        );
        let _ = writeln!(
            out,
            "add rule inet {table} postrouting meta mark and {m:#010x} == {m:#010x} meta mark set meta mark xor {m:#010x} masquerade"
        );
    }
    if let Some(m) = marks.reject {
        for hook in ["forward", "output"] {
            let _ = writeln!(
                out,
                "add chain inet {table} reject_{hook} {{ type filter hook {hook} priority 0; policy accept; }}"
            );
            let _ = writeln!(
                out,
                "add rule inet {table} reject_{hook} meta mark and {m:#010x} == {m:#010x} meta l4proto tcp reject with tcp reset"
            );
            let _ = writeln!(
                out,
                "add rule inet {table} reject_{hook} meta mark and {m:#010x} == {m:#010x} reject"
            );
        }
    }
    out
}

/// The delta transaction for `ops` (from `diff(applied, desired)`, the table holding
/// `applied`): only the services the ops name are touched, and only their map element and
/// chain. Empty when `ops` is.
pub fn render_ops(ops: &[Op], desired: &KernelState, config: &NftConfig) -> String {
    // Service → whether the ops create it. BTreeMap: one entry per service, in order.
    // Ops come in runs of one service (`diff` groups them): merge each run before the map.
    let mut touched: BTreeMap<&Service, bool> = BTreeMap::new();
    let mut run: Option<(&Service, bool)> = None;
    for op in ops {
        let created = matches!(op, Op::AddService(_));
        match &mut run {
            Some((service, flag)) if *service == op.service() => *flag |= created,
            _ => {
                if let Some((service, flag)) = run.replace((op.service(), created)) {
                    *touched.entry(service).or_insert(false) |= flag;
                }
            }
        }
    }
    if let Some((service, flag)) = run {
        *touched.entry(service).or_insert(false) |= flag;
    }
    let table = config.table_name();
    let marks = Marks::of(config);
    let mut out = String::new();
    for (service, created) in touched {
        if !representable(service) {
            continue;
        }
        let chain = chain_name(service);
        let map = if service.addr.is_ipv4() { MAP4 } else { MAP6 };
        match desired.services.get(service) {
            Some(dests) if created => {
                let _ = writeln!(out, "add chain inet {table} {chain}");
                service_rule(&mut out, &table, &chain, service, dests, marks);
                let _ = write!(out, "add element inet {table} {map} {{ ");
                element(&mut out, service, Some(&chain));
                out.push_str(" }\n");
            }
            Some(dests) => {
                let _ = writeln!(out, "flush chain inet {table} {chain}");
                service_rule(&mut out, &table, &chain, service, dests, marks);
            }
            None => {
                let _ = write!(out, "delete element inet {table} {map} {{ ");
                element(&mut out, service, None);
                out.push_str(" }\n");
                let _ = writeln!(out, "flush chain inet {table} {chain}");
                let _ = writeln!(out, "delete chain inet {table} {chain}");
            }
        }
    }
    out
}

/// The marks in force for one rendering.
#[derive(Clone, Copy)]
struct Marks {
    masquerade: Option<u32>,
    reject: Option<u32>,
}

impl Marks {
    fn of(config: &NftConfig) -> Self {
        Marks {
            masquerade: config.effective_masquerade_mark(),
            reject: config.effective_reject_mark(),
        }
    }
}

/// `tcp . 10.0.0.1 . 80`, with ` : goto <chain>` when given a chain.
fn element(out: &mut String, service: &Service, goto: Option<&str>) {
    let protocol = match service.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let _ = write!(
        out,
        "{protocol} . {} . {}",
        service.addr.ip(),
        service.addr.port()
    );
    if let Some(chain) = goto {
        let _ = write!(out, " : goto {chain}");
    }
}

/// The one rule of a service chain: weighted DNAT over the destinations of positive weight
/// and of the service's family, or reject (drop) when there is none.
fn service_rule(
    out: &mut String,
    table: &str,
    chain: &str,
    service: &Service,
    dests: &Destinations,
    marks: Marks,
) {
    let v4 = service.addr.is_ipv4();
    let live = || {
        dests
            .iter()
            .filter(move |(dest, &w)| w > 0 && dest.is_ipv4() == v4)
    };
    let total: u64 = live().map(|(_, &w)| u64::from(w)).sum();
    let _ = write!(out, "add rule inet {table} {chain} ");
    if total == 0 {
        match marks.reject {
            Some(m) => {
                let _ = writeln!(out, "meta mark set meta mark or {m:#010x}");
            }
            None => out.push_str("drop\n"),
        }
        return;
    }
    // Scale so that the values fit numgen's u32 modulus; each live destination keeps ≥ 1.
    let limit = u64::from(u32::MAX);
    let divisor = if total > limit {
        total.div_ceil(limit / 2)
    } else {
        1
    };
    let mut ranges = String::new();
    let mut next: u64 = 0;
    for (dest, &w) in live() {
        let width = (u64::from(w) / divisor).max(1);
        let last = next.saturating_add(width - 1);
        if last >= limit {
            break; // only reachable with more than 2^31 destinations
        }
        if !ranges.is_empty() {
            ranges.push_str(", ");
        }
        if last == next {
            let _ = write!(ranges, "{next}");
        } else {
            let _ = write!(ranges, "{next}-{last}");
        }
        let _ = write!(ranges, " : {} . {}", dest.ip(), dest.port());
        next = last + 1;
    }
    if let Some(m) = marks.masquerade {
        let _ = write!(out, "meta mark set meta mark or {m:#010x} ");
    }
    let family = if v4 { "ip" } else { "ip6" };
    let _ = writeln!(
        out,
        "meta l4proto {} dnat {family} to numgen random mod {next} map {{ {ranges} }}",
        service.protocol.as_str()
    );
}
