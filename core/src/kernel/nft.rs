//! The desired [`KernelState`] rendered as nftables transactions (`nft -f -` input): once
//! in full ([`render_full`]) and as deltas from the applied state ([`render_delta`]), in
//! the knftables model (one private table, every change one atomic transaction, the
//! committed state kept by the caller).
//!
//! # The table
//!
//! One table of family `inet` (default name `minuteman`, see [`NftConfig`]), so one set of
//! hook chains serves IPv4 and IPv6 (`inet` NAT needs Linux ≥ 5.2). Its size in chains and
//! rules does not grow with the number of services: services are map elements.
//!
//! - verdict maps `services4` (`type inet_proto . ipv4_addr . inet_service : verdict`) and
//!   `services6` (the same with `ipv6_addr`), one element per service, going to the
//!   modulus chain of its family, protocol and slot count: `tcp . 10.0.0.1 . 80 : goto
//!   mod4_tcp_4`;
//! - slot maps `d4_tcp`, `d4_udp`, `d6_tcp` and `d6_udp` (see [`slot_map`]; `typeof ip
//!   daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport`, with `ip6` and `udp`
//!   for the others): a service with `N` slots has the elements `10.0.0.1 . 80 . 0` to
//!   `10.0.0.1 . 80 . N-1` in the map of its family and protocol, each mapping to one
//!   destination (`: 10.1.0.2 . 8080`). One map per protocol, not one keyed by
//!   `meta l4proto` too: see `Group` for the nft 1.0.6 bug that rules the latter out;
//! - one modulus chain per family, protocol and slot count in use (see
//!   [`modulus_chain`]), shared by every such service, with a single rule: `dnat ip to ip
//!   daddr . tcp dport . numgen random mod N map @d4_tcp` (nft guards it with `meta
//!   l4proto tcp`). The packet's own address and port pick its service's slots, `numgen`
//!   one of them;
//! - weights: the destinations of positive weight and of the service's family, in address
//!   order, each own `w` consecutive slots of `0..N` (see [`slots`]): with the usual
//!   weights of 1, one slot per destination. When the weights sum past [`MAX_SLOTS`] they
//!   are scaled down proportionally, every positive weight keeping at least one slot.
//!   Destinations of weight 0 get no slot: they take no new connection, and their existing
//!   connections carry on through conntrack (nat chains only see a connection's first
//!   packet), which is IPVS's drain. Destinations of the other address family are skipped
//!   (IPVS refuses them too);
//! - hook chains `prerouting` (nat, priority -100: traffic from containers and other hosts)
//!   and `output` (nat, priority -100: clients on this host), each looking the packet's
//!   `meta l4proto . daddr . th dport` up in both verdict maps;
//! - masquerade (IPVS masquerade forwarding plus the SNAT rule the IPVS data plane adds):
//!   the modulus chains set the [`NftConfig::masquerade_mark`] bit and a `postrouting` nat
//!   chain (priority 100) clears it and masquerades, so replies come back through this host
//!   even when client and backend share a bridge;
//! - a service without any destination of positive weight never DNATs to nothing: its
//!   element goes to the chain [`NO_DESTINATION`], which sets the [`NftConfig::reject_mark`]
//!   bit, and the filter chains `reject_forward` and `reject_output` (priority 0) reject the
//!   connection (TCP reset, ICMP port unreachable otherwise), so clients fail at once
//!   instead of timing out (nft cannot reject in prerouting itself). Without a reject mark
//!   its element's verdict is `drop`.
//!
//! All maps are plain hash maps (no `interval` flag): with them `nft` 1.0.6 adds and deletes
//! elements without fetching every element of the map first, so a delta costs about the
//! same with 10 services as with 10,000.
//!
//! # Invariants
//!
//! - Deterministic: output depends only on the inputs, in `BTreeMap` order; no hashing.
//! - Total: no input panics; names are sanitized so no input can inject nft syntax.
//! - Bounded: a service has at most `max(MAX_SLOTS, live destinations)` slots, so the
//!   table holds at most that many modulus chains per family and protocol, and never more
//!   than one per service.
//! - [`render_full`] is idempotent: `add table` + `delete table` + the whole definition, so
//!   it runs the same on an empty ruleset and over any earlier version of the table. It
//!   creates exactly the modulus chains its services use.
//! - [`render_delta`]`(applied, desired, services)` touches only the listed services and
//!   the modulus chains they start or stop using: for each listed service whose slots
//!   differ, it deletes the slot elements it no longer has, deletes and re-adds those whose
//!   destination changed, adds the new ones, and replaces its verdict element only when its
//!   verdict (slot count, or no destination) changed; a modulus chain that no service of
//!   `applied` used is created (`add chain` + `flush chain` + `add rule`, idempotent) and
//!   one that no service of `desired` uses is deleted, after the elements that went to it.
//!   When the table holds `render_full(applied)` and every service that differs between
//!   the two states is listed, the kernel afterwards holds exactly `render_full(desired)`;
//!   otherwise nft usually refuses the transaction as a whole (a missing element or chain,
//!   an existing element, a chain still in use) and the caller falls back to
//!   [`render_full`]. Services listed but equal on both sides render nothing.
//! - Cost of a delta: the slots of the listed services, plus, only when a modulus chain may
//!   appear or vanish, at most one walk over `applied` and one over `desired`, each ending
//!   as soon as every such chain is found in use.
//! - Services on an IPv6 address with a scope id or flow label are not representable in
//!   nft (the key has no room for them; a VIP is never link-scoped) and are left out of
//!   both renderings.

use super::{Destinations, KernelState, Service};
use crate::vip::Protocol;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

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
/// The slot maps, by family and protocol: IPv4 TCP, IPv4 UDP, IPv6 TCP, IPv6 UDP.
pub const SLOT_MAPS: [&str; 4] = ["d4_tcp", "d4_udp", "d6_tcp", "d6_udp"];
/// The chain that sets the reject mark, for services without a live destination.
pub const NO_DESTINATION: &str = "no_destination";
/// Longest table name [`NftConfig::table_name`] keeps.
pub const MAX_TABLE_NAME: usize = 64;
/// The most slots a service gets when it has at most that many live destinations; weights
/// summing past it are scaled down (see [`slots`]).
pub const MAX_SLOTS: u32 = 1024;

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

/// The modulus chain of the services of family IPv4 (`v4`) or IPv6 and of `protocol` with
/// `modulus` slots: `mod4_tcp_10`, `mod6_udp_1`.
pub fn modulus_chain(v4: bool, protocol: Protocol, modulus: u32) -> String {
    format!(
        "mod{}_{}_{modulus}",
        if v4 { 4 } else { 6 },
        protocol.as_str()
    )
}

/// The slot map of the services of family IPv4 (`v4`) or IPv6 and of `protocol`.
pub fn slot_map(v4: bool, protocol: Protocol) -> &'static str {
    SLOT_MAPS[Group { v4, protocol }.index()]
}

/// Whether nft can hold `service`: every IPv4 service, IPv6 ones without scope id or flow
/// label.
pub fn representable(service: &Service) -> bool {
    match service.addr {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(addr) => addr.scope_id() == 0 && addr.flowinfo() == 0,
    }
}

/// The slots of `service`: its destinations of positive weight and of its address family,
/// in address order, each with its number of consecutive slots. That number is the weight
/// while the weights sum to at most [`MAX_SLOTS`]; past it, with `n` such destinations and
/// weights summing to `s`, a weight `w` gets `1 + (w - 1)(MAX_SLOTS - n) / (s - n)` slots
/// (rounded down; the total stays ≤ [`MAX_SLOTS`]), or 1 when `n ≥ MAX_SLOTS`. Empty when
/// no destination is live. Idempotent: the slot counts, taken as weights, give themselves.
pub fn slots(service: &Service, dests: &Destinations) -> Vec<(SocketAddr, u32)> {
    let scale = Scale::of(service, dests);
    let mut out = Vec::with_capacity(usize::try_from(scale.live).unwrap_or(0));
    let mut total: u64 = 0;
    for (dest, weight) in live(service, dests) {
        let count = scale.count(weight);
        total += count;
        if total > u64::from(u32::MAX) {
            break; // only reachable with more than 2^32 destinations
        }
        // count ≤ total ≤ u32::MAX here.
        out.push((dest, u32::try_from(count).unwrap_or(u32::MAX)));
    }
    out
}

/// The sum of [`slots`] without building it.
fn slot_total(service: &Service, dests: &Destinations) -> u32 {
    let scale = Scale::of(service, dests);
    let total = if scale.sum <= u64::from(MAX_SLOTS) {
        scale.sum
    } else if scale.live >= u64::from(MAX_SLOTS) {
        scale.live
    } else {
        live(service, dests).map(|(_, w)| scale.count(w)).sum()
    };
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Destinations of positive weight and of the service's family, with their weight.
fn live<'a>(
    service: &Service,
    dests: &'a Destinations,
) -> impl Iterator<Item = (SocketAddr, u64)> + 'a {
    let v4 = service.addr.is_ipv4();
    dests
        .iter()
        .filter(move |(dest, &w)| w > 0 && dest.is_ipv4() == v4)
        .map(|(dest, &w)| (*dest, u64::from(w)))
}

/// The number of live destinations and the sum of their weights.
struct Scale {
    live: u64,
    sum: u64,
}

impl Scale {
    fn of(service: &Service, dests: &Destinations) -> Scale {
        let (live, sum) = live(service, dests).fold((0u64, 0u64), |(n, s), (_, w)| (n + 1, s + w));
        Scale { live, sum }
    }

    /// The slots of a live destination of weight `weight` (≥ 1).
    fn count(&self, weight: u64) -> u64 {
        let cap = u64::from(MAX_SLOTS);
        if self.sum <= cap {
            weight
        } else if self.live >= cap {
            1
        } else {
            // sum > cap > live, so the divisor is positive; (w - 1) < 2^32 and
            // (cap - live) ≤ 1024: the product fits.
            1 + (weight - 1) * (cap - self.live) / (self.sum - self.live)
        }
    }
}

/// What a service's verdict element says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// `goto modF_P_N`.
    Modulus(u32),
    /// `goto no_destination`, or `drop`.
    NoDestination,
}

impl Verdict {
    fn of_total(total: u32) -> Verdict {
        if total == 0 {
            Verdict::NoDestination
        } else {
            Verdict::Modulus(total)
        }
    }
}

/// The address family of a verdict map: IPv4 (`v4`) or IPv6.
#[derive(Clone, Copy)]
struct Family {
    v4: bool,
}

const FAMILIES: [Family; 2] = [Family { v4: true }, Family { v4: false }];

impl Family {
    fn of(service: &Service) -> Family {
        Family {
            v4: service.addr.is_ipv4(),
        }
    }
    fn index(self) -> usize {
        usize::from(!self.v4)
    }
    fn services(self) -> &'static str {
        if self.v4 {
            MAP4
        } else {
            MAP6
        }
    }
    fn ip(self) -> &'static str {
        if self.v4 {
            "ip"
        } else {
            "ip6"
        }
    }
    fn addr_type(self) -> &'static str {
        if self.v4 {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        }
    }
}

/// The family and protocol of a slot map and its modulus chains.
///
/// Why per protocol: the slot map's data must be typed `ip daddr . tcp dport` (or `udp`),
/// which makes nft guard every rule using it with `meta l4proto tcp` (or `udp`). The
/// protocol-neutral `ip daddr . th dport` would let one map serve both, but nft 1.0.6
/// cannot evaluate a new rule against such a map once it reads it back from the kernel
/// ("conflicting protocols specified: ip vs. th"), so a delta could never create a
/// modulus chain.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Group {
    v4: bool,
    protocol: Protocol,
}

const GROUPS: [Group; 4] = [
    Group {
        v4: true,
        protocol: Protocol::Tcp,
    },
    Group {
        v4: true,
        protocol: Protocol::Udp,
    },
    Group {
        v4: false,
        protocol: Protocol::Tcp,
    },
    Group {
        v4: false,
        protocol: Protocol::Udp,
    },
];

impl Group {
    fn of(service: &Service) -> Group {
        Group {
            v4: service.addr.is_ipv4(),
            protocol: service.protocol,
        }
    }
    /// The position in [`GROUPS`] and [`SLOT_MAPS`].
    fn index(self) -> usize {
        2 * usize::from(!self.v4) + usize::from(self.protocol == Protocol::Udp)
    }
    fn family(self) -> Family {
        Family { v4: self.v4 }
    }
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

/// The whole table for `state`, as one idempotent transaction.
pub fn render_full(state: &KernelState, config: &NftConfig) -> String {
    let table = config.table_name();
    let marks = Marks::of(config);
    let mut out = String::with_capacity(4096 + state.services.len() * 400);
    let _ = writeln!(out, "add table inet {table}");
    let _ = writeln!(out, "delete table inet {table}");
    let _ = writeln!(out, "add table inet {table}");
    for family in FAMILIES {
        let _ = writeln!(
            out,
            "add map inet {table} {} {{ type inet_proto . {} . inet_service : verdict; }}",
            family.services(),
            family.addr_type()
        );
    }
    for group in GROUPS {
        let ip = group.family().ip();
        let p = group.protocol.as_str();
        let _ = writeln!(
            out,
            "add map inet {table} {} {{ typeof {ip} daddr . {p} dport . numgen random mod 1 : {ip} daddr . {p} dport; }}",
            SLOT_MAPS[group.index()]
        );
    }
    if let Some(m) = marks.reject {
        let _ = writeln!(out, "add chain inet {table} {NO_DESTINATION}");
        let _ = writeln!(
            out,
            "add rule inet {table} {NO_DESTINATION} meta mark set meta mark or {m:#010x}"
        );
    }

    let mut moduli: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut slot_items: [String; 4] = Default::default();
    let mut service_items: [String; 2] = Default::default();
    for (service, dests) in state.services.iter().filter(|(s, _)| representable(s)) {
        let g = Group::of(service).index();
        let mut slot = 0u32;
        for (dest, count) in slots(service, dests) {
            for _ in 0..count {
                slot_element(&mut slot_items[g], service, slot, Some(dest));
                slot += 1;
            }
        }
        let verdict = Verdict::of_total(slot);
        if let Verdict::Modulus(m) = verdict {
            moduli.insert((g, m));
        }
        let f = Family::of(service).index();
        verdict_element(&mut service_items[f], service, Some(verdict), marks);
    }
    for &(g, modulus) in &moduli {
        modulus_rule(&mut out, &table, GROUPS[g], modulus, marks, false);
    }
    for group in GROUPS {
        let g = group.index();
        element_block(&mut out, "add", &table, SLOT_MAPS[g], &slot_items[g]);
    }
    for family in FAMILIES {
        let f = family.index();
        element_block(
            &mut out,
            "add",
            &table,
            family.services(),
            &service_items[f],
        );
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

/// The delta transaction from `applied` (what the table holds, as rendered by
/// [`render_full`] or by earlier deltas) to `desired`, touching only `services` (the ones
/// that may have changed; listed twice counts once, unchanged ones render nothing) and the
/// modulus chains they start or stop using. Empty when nothing listed changed.
pub fn render_delta<'a>(
    applied: &KernelState,
    desired: &KernelState,
    services: impl IntoIterator<Item = &'a Service>,
    config: &NftConfig,
) -> String {
    let services: BTreeSet<&Service> = services.into_iter().filter(|s| representable(s)).collect();
    let marks = Marks::of(config);
    // Slot deletions and additions per slot map, verdict deletions and additions per
    // family.
    let mut slot_del: [String; 4] = Default::default();
    let mut slot_add: [String; 4] = Default::default();
    let mut verdict_del: [String; 2] = Default::default();
    let mut verdict_add: [String; 2] = Default::default();
    // Modulus chains a listed service starts (stops) using: (group index, modulus).
    let mut appear: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut vanish: BTreeSet<(usize, u32)> = BTreeSet::new();
    for service in services {
        let old = applied.services.get(service);
        let new = desired.services.get(service);
        if old == new {
            continue;
        }
        let g = Group::of(service).index();
        let f = Family::of(service).index();
        let old = old.map(|d| layout(service, d));
        let new = new.map(|d| layout(service, d));
        let (o, n) = (old.as_deref().unwrap_or(&[]), new.as_deref().unwrap_or(&[]));
        for slot in 0..o.len().max(n.len()) {
            // slot < max(len) ≤ u32::MAX (see `slots`).
            let index = u32::try_from(slot).unwrap_or(u32::MAX);
            match (o.get(slot), n.get(slot)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), b) => {
                    slot_element(&mut slot_del[g], service, index, None);
                    if let Some(&b) = b {
                        slot_element(&mut slot_add[g], service, index, Some(b));
                    }
                }
                (None, Some(&b)) => slot_element(&mut slot_add[g], service, index, Some(b)),
                (None, None) => {}
            }
        }
        let total = |layout: &[SocketAddr]| {
            Verdict::of_total(u32::try_from(layout.len()).unwrap_or(u32::MAX))
        };
        let was = old.as_deref().map(total);
        let will = new.as_deref().map(total);
        if was == will {
            continue;
        }
        if was.is_some() {
            verdict_element(&mut verdict_del[f], service, None, marks);
        }
        if let Some(verdict) = will {
            verdict_element(&mut verdict_add[f], service, Some(verdict), marks);
        }
        if let Some(Verdict::Modulus(m)) = was {
            vanish.insert((g, m));
        }
        if let Some(Verdict::Modulus(m)) = will {
            appear.insert((g, m));
        }
    }
    // A chain one listed service leaves and another takes stays as it is.
    let both: Vec<(usize, u32)> = appear.intersection(&vanish).copied().collect();
    for key in &both {
        appear.remove(key);
        vanish.remove(key);
    }
    // The table has a chain iff some service of `applied` uses it; it keeps it iff some
    // service of `desired` does.
    retain_unused(&mut appear, applied);
    retain_unused(&mut vanish, desired);

    let table = config.table_name();
    let mut out = String::new();
    for &(g, modulus) in &appear {
        modulus_rule(&mut out, &table, GROUPS[g], modulus, marks, true);
    }
    for family in FAMILIES {
        let f = family.index();
        element_block(
            &mut out,
            "delete",
            &table,
            family.services(),
            &verdict_del[f],
        );
    }
    for g in 0..GROUPS.len() {
        element_block(&mut out, "delete", &table, SLOT_MAPS[g], &slot_del[g]);
    }
    for g in 0..GROUPS.len() {
        element_block(&mut out, "add", &table, SLOT_MAPS[g], &slot_add[g]);
    }
    for family in FAMILIES {
        let f = family.index();
        element_block(&mut out, "add", &table, family.services(), &verdict_add[f]);
    }
    for &(g, modulus) in &vanish {
        let group = GROUPS[g];
        let chain = modulus_chain(group.v4, group.protocol, modulus);
        let _ = writeln!(out, "flush chain inet {table} {chain}");
        let _ = writeln!(out, "delete chain inet {table} {chain}");
    }
    out
}

/// Removes from `moduli` every (group, modulus) some representable service of `state`
/// has; stops as soon as none is left.
fn retain_unused(moduli: &mut BTreeSet<(usize, u32)>, state: &KernelState) {
    if moduli.is_empty() {
        return;
    }
    let mut groups = [false; 4];
    for &(g, _) in moduli.iter() {
        groups[g] = true;
    }
    for (service, dests) in &state.services {
        let g = Group::of(service).index();
        if !groups[g] || !representable(service) {
            continue;
        }
        let total = slot_total(service, dests);
        if total > 0 && moduli.remove(&(g, total)) && moduli.is_empty() {
            return;
        }
    }
}

/// The destination of each slot of `service`, in slot order.
fn layout(service: &Service, dests: &Destinations) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (dest, count) in slots(service, dests) {
        out.extend(std::iter::repeat_n(dest, count as usize));
    }
    out
}

/// The modulus chain's definition: `add chain` (+ `flush chain` when `idempotent`) + its
/// rule.
fn modulus_rule(
    out: &mut String,
    table: &str,
    group: Group,
    modulus: u32,
    marks: Marks,
    idempotent: bool,
) {
    let chain = modulus_chain(group.v4, group.protocol, modulus);
    let _ = writeln!(out, "add chain inet {table} {chain}");
    if idempotent {
        let _ = writeln!(out, "flush chain inet {table} {chain}");
    }
    let _ = write!(out, "add rule inet {table} {chain} ");
    if let Some(m) = marks.masquerade {
        let _ = write!(out, "meta mark set meta mark or {m:#010x} ");
    }
    let ip = group.family().ip();
    let _ = writeln!(
        out,
        "dnat {ip} to {ip} daddr . {} dport . numgen random mod {modulus} map @{}",
        group.protocol.as_str(),
        SLOT_MAPS[group.index()]
    );
}

/// `verb element inet TABLE MAP {` + the items + `}`; nothing when there is no item.
fn element_block(out: &mut String, verb: &str, table: &str, map: &str, items: &str) {
    if !items.is_empty() {
        let _ = writeln!(out, "{verb} element inet {table} {map} {{");
        out.push_str(items);
        out.push_str("}\n");
    }
}

/// One item of a slot map: `\t10.0.0.1 . 80 . 3 : 10.1.0.2 . 8080,\n` (the map gives the
/// protocol), without the value for a deletion.
fn slot_element(out: &mut String, service: &Service, slot: u32, dest: Option<SocketAddr>) {
    let _ = write!(
        out,
        "\t{} . {} . {slot}",
        service.addr.ip(),
        service.addr.port()
    );
    if let Some(dest) = dest {
        let _ = write!(out, " : {} . {}", dest.ip(), dest.port());
    }
    out.push_str(",\n");
}

/// One item of a verdict map: `\ttcp . 10.0.0.1 . 80 : goto mod4_tcp_3,\n`, without the
/// verdict for a deletion.
fn verdict_element(out: &mut String, service: &Service, verdict: Option<Verdict>, marks: Marks) {
    let _ = write!(
        out,
        "\t{} . {} . {}",
        service.protocol.as_str(),
        service.addr.ip(),
        service.addr.port()
    );
    match verdict {
        None => {}
        Some(Verdict::Modulus(m)) => {
            let chain = modulus_chain(service.addr.is_ipv4(), service.protocol, m);
            let _ = write!(out, " : goto {chain}");
        }
        Some(Verdict::NoDestination) => match marks.reject {
            Some(_) => {
                let _ = write!(out, " : goto {NO_DESTINATION}");
            }
            None => out.push_str(" : drop"),
        },
    }
    out.push_str(",\n");
}
