//! Reading the kernel back: the text `nft list table inet <name>` prints for the core's
//! rendering ([`minuteman_core::kernel::nft`]) parsed into a [`Listing`] ([`parse`]), what a
//! listing can show of a [`KernelState`] ([`visible`]), the fixed chains the rendering
//! installs ([`expected_chains`]), and the comparison of a listing with a committed state
//! ([`compare`]). Pure: no IO.
//!
//! Invariants:
//! - [`parse`] never panics; any line it does not recognise as part of the core's rendering
//!   (unknown statement, map, set, malformed address, a verdict element whose slots are
//!   missing or the reverse, slots that do not cover `0..N` for the element's modulus
//!   chain `mod…_N`, a destination's slots not in the rendering's order) is an error
//!   naming the line.
//! - A service is its element in `services4`/`services6`; its destinations are the ones
//!   its slots in the slot map of its family and protocol name, and the weight of a
//!   destination is its number of slots. The rendering keeps weights as slot counts while
//!   they sum to at most [`MAX_SLOTS`](minuteman_core::kernel::nft::MAX_SLOTS), so below
//!   that a listing gives the committed weights back exactly; [`visible`] applies the same
//!   scaling ([`slots`]) so the two compare equal either way.
//! - Destinations of weight 0 (drained) and of the other address family get no slot, so
//!   no listing shows them: [`visible`] leaves them out, and a service whose element goes
//!   to `no_destination` (or drops) has no destinations.
//! - Modulus chains are shared: [`compare`] wants exactly the ones the committed services
//!   use, each with the rule the rendering gives it.
//! - `parse(listing of render_full(s))` == `visible(s)`, and [`compare`] accepts it.
//! - Accepts both nft's names and numbers where `nft` may print either (`tcp`/`6`,
//!   `dstnat`/`-100`).

use minuteman_core::kernel::nft::{
    modulus_chain, representable, slot_map, slots, NftConfig, MAP4, MAP6, NO_DESTINATION, SLOT_MAPS,
};
use minuteman_core::kernel::{Destinations, KernelState, Service};
use minuteman_core::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What `nft list table` showed, in the core's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The table's name, from its first line.
    pub table: String,
    /// Services with their verdict element, their slots and a chain the rendering makes.
    pub state: KernelState,
    /// The form of each service's verdict (which marks it sets), to compare with the
    /// config.
    pub forms: BTreeMap<Service, RuleForm>,
    /// The maps present (with the type the rendering gives them).
    pub maps: BTreeSet<String>,
    /// The modulus chains present, by name, with the masquerade mark their rule sets.
    pub moduli: BTreeMap<String, Option<u32>>,
    /// Every chain that is not a modulus chain, by name.
    pub chains: BTreeMap<String, Chain>,
}

/// What a service's verdict does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleForm {
    /// Weighted DNAT through a modulus chain, setting the masquerade mark when there is one.
    Dnat { mark: Option<u32> },
    /// No live destination: `goto no_destination`, which sets the reject mark.
    Reject { mark: u32 },
    /// No live destination and no reject mark: drop.
    Drop,
}

/// A chain other than a modulus chain: its hook line and its rules, whitespace collapsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub hook: Option<Hook>,
    pub rules: Vec<String>,
}

/// `type nat hook prerouting priority dstnat; policy accept;`, priority as a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub kind: String,
    pub hook: String,
    pub priority: i32,
    pub policy: String,
}

/// A line of the listing that is not the core's rendering.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}: `{text}`")]
pub struct ListingError {
    /// 1-based.
    pub line: usize,
    pub text: String,
    pub why: String,
}

fn err<T>(line: usize, text: &str, why: impl Into<String>) -> Result<T, ListingError> {
    Err(ListingError {
        line,
        text: text.to_owned(),
        why: why.into(),
    })
}

/// Where a verdict element goes.
enum Target<'a> {
    Goto(&'a str),
    Drop,
}

/// An element of `services4`/`services6` as read.
struct VerdictElement<'a> {
    line: usize,
    text: &'a str,
    service: Service,
    target: Target<'a>,
}

/// An element of a slot map as read: its slot and destination, and where it was.
struct Slot<'a> {
    slot: u32,
    dest: SocketAddr,
    line: usize,
    text: &'a str,
}

/// A modulus chain as read: its family, protocol, modulus and the mark its rule sets.
struct Modulus {
    v4: bool,
    protocol: Protocol,
    modulus: u32,
    mark: Option<u32>,
}

/// Elements and chains before they are joined.
#[derive(Default)]
struct Parts<'a> {
    verdicts: Vec<VerdictElement<'a>>,
    slots: BTreeMap<Service, Vec<Slot<'a>>>,
    moduli: BTreeMap<&'a str, Modulus>,
    /// Line and text of each chain's header, for errors about its content.
    headers: BTreeMap<&'a str, (usize, &'a str)>,
}

/// Parses the output of `nft list table inet <name>` (without `-a`, `-n` or `-j`).
pub fn parse(text: &str) -> Result<Listing, ListingError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let mut listing = Listing::default();
    let Some((n, first)) = lines.next() else {
        return err(1, "", "empty listing");
    };
    listing.table = match first
        .strip_prefix("table inet ")
        .and_then(|rest| rest.strip_suffix(" {"))
    {
        Some(name) if is_name(name) => name.to_owned(),
        _ => return err(n, first, "expected `table inet NAME {`"),
    };
    let mut parts = Parts::default();
    let mut closed = false;
    while let Some((n, line)) = lines.next() {
        if closed {
            return err(n, line, "text after the end of the table");
        }
        if line == "}" {
            closed = true;
        } else if let Some(name) = block(line, "map ") {
            parse_map(n, line, name, &mut lines, &mut listing, &mut parts)?;
        } else if let Some(name) = block(line, "chain ") {
            if parts.headers.insert(name, (n, line)).is_some() {
                return err(n, line, "chain listed twice");
            }
            if let Some((v4, protocol, modulus)) = modulus_name(name) {
                let mark = parse_modulus_chain(n, line, v4, protocol, modulus, &mut lines)?;
                parts.moduli.insert(
                    name,
                    Modulus {
                        v4,
                        protocol,
                        modulus,
                        mark,
                    },
                );
                listing.moduli.insert(name.to_owned(), mark);
            } else {
                let chain = parse_chain(&mut lines)?;
                listing.chains.insert(name.to_owned(), chain);
            }
        } else {
            return err(n, line, "expected `map`, `chain` or `}`");
        }
    }
    if !closed {
        return err(text.lines().count(), "", "the table is not closed");
    }
    join(parts, &mut listing)?;
    Ok(listing)
}

/// Joins each verdict element with its slots and its chain: every slot belongs to a
/// service with a verdict element going to a modulus chain, whose slots are exactly
/// `0..N` for its chain's `N`, in the rendering's order (each destination's slots
/// consecutive, destinations ascending).
fn join(mut parts: Parts<'_>, listing: &mut Listing) -> Result<(), ListingError> {
    let reject_mark = |parts: &Parts<'_>, listing: &Listing| -> Result<u32, ListingError> {
        let rules = listing.chains.get(NO_DESTINATION).map(|c| &c.rules[..]);
        if let Some([rule]) = rules {
            if let Some(mark) = rule
                .strip_prefix("meta mark set meta mark | ")
                .and_then(parse_hex)
            {
                return Ok(mark);
            }
        }
        let (line, text) = parts
            .headers
            .get(NO_DESTINATION)
            .copied()
            .unwrap_or((0, ""));
        err(
            line,
            text,
            "expected the one rule `meta mark set meta mark | MARK`",
        )
    };
    for element in std::mem::take(&mut parts.verdicts) {
        let service = element.service;
        let fail = |why: &str| err(element.line, element.text, why.to_owned());
        let (dests, form) = match element.target {
            Target::Drop => (Destinations::new(), RuleForm::Drop),
            Target::Goto(NO_DESTINATION) => {
                if !parts.headers.contains_key(NO_DESTINATION) {
                    return fail("the element goes to a chain that is not listed");
                }
                let mark = reject_mark(&parts, listing)?;
                (Destinations::new(), RuleForm::Reject { mark })
            }
            Target::Goto(chain) => {
                let Some(m) = parts.moduli.get(chain) else {
                    return fail(if parts.headers.contains_key(chain) {
                        "the element goes to a chain that is not a modulus chain"
                    } else {
                        "the element goes to a chain that is not listed"
                    });
                };
                if (m.v4, m.protocol) != (service.addr.is_ipv4(), service.protocol) {
                    return fail(
                        "the element goes to the modulus chain of another family or protocol",
                    );
                }
                let mut slots = parts.slots.remove(&service).unwrap_or_default();
                // Stable: of two equal slots, the later line is the one named.
                slots.sort_by_key(|s| s.slot);
                let mut dests = Destinations::new();
                let mut previous: Option<SocketAddr> = None;
                for (i, slot) in slots.iter().enumerate() {
                    if u64::from(slot.slot) != i as u64 || slot.slot >= m.modulus {
                        return err(
                            slot.line,
                            slot.text,
                            format!(
                                "the slots of {service} do not cover 0..{} once each",
                                m.modulus
                            ),
                        );
                    }
                    // Non-decreasing: each destination's slots consecutive, in address order.
                    if previous.is_some_and(|p| p > slot.dest) {
                        return err(
                            slot.line,
                            slot.text,
                            format!("the slots of {service} are not in the rendering's order"),
                        );
                    }
                    *dests.entry(slot.dest).or_insert(0) += 1;
                    previous = Some(slot.dest);
                }
                if slots.len() as u64 != u64::from(m.modulus) {
                    return fail(&format!(
                        "{service} has {} slots, its chain wants {}",
                        slots.len(),
                        m.modulus
                    ));
                }
                (dests, RuleForm::Dnat { mark: m.mark })
            }
        };
        if matches!(form, RuleForm::Reject { .. } | RuleForm::Drop) {
            if let Some(slot) = parts.slots.get(&service).and_then(|s| s.first()) {
                return err(
                    slot.line,
                    slot.text,
                    format!("a slot of {service}, whose element has no destination"),
                );
            }
        }
        if listing
            .state
            .services
            .insert(service, Arc::new(dests))
            .is_some()
        {
            return fail("service listed twice");
        }
        listing.forms.insert(service, form);
    }
    if let Some(slot) = parts.slots.values().flatten().next() {
        return err(
            slot.line,
            slot.text,
            "a slot of a service without a verdict element",
        );
    }
    Ok(())
}

/// `map NAME {` → `NAME`.
fn block<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    line.strip_prefix(keyword)
        .and_then(|rest| rest.strip_suffix(" {"))
        .filter(|name| is_name(name))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// `mod4_tcp_10` → (IPv4, TCP, 10), exactly as [`modulus_chain`] spells it.
fn modulus_name(name: &str) -> Option<(bool, Protocol, u32)> {
    let rest = name.strip_prefix("mod")?;
    let (family, rest) = rest.split_once('_')?;
    let (protocol, modulus) = rest.split_once('_')?;
    let v4 = match family {
        "4" => true,
        "6" => false,
        _ => return None,
    };
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    let modulus: u32 = modulus.parse().ok().filter(|&m| m > 0)?;
    (modulus_chain(v4, protocol, modulus) == name).then_some((v4, protocol, modulus))
}

/// Which map `name` is: a verdict map of a family, or a slot map of a family and protocol.
enum MapKind {
    Verdicts { v4: bool },
    Slots { v4: bool, protocol: Protocol },
}

fn map_kind(name: &str) -> Option<MapKind> {
    match name {
        MAP4 => return Some(MapKind::Verdicts { v4: true }),
        MAP6 => return Some(MapKind::Verdicts { v4: false }),
        _ => {}
    }
    for v4 in [true, false] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            if slot_map(v4, protocol) == name {
                return Some(MapKind::Slots { v4, protocol });
            }
        }
    }
    None
}

fn parse_map<'a>(
    n: usize,
    header: &'a str,
    name: &'a str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    listing: &mut Listing,
    parts: &mut Parts<'a>,
) -> Result<(), ListingError> {
    let Some(kind) = map_kind(name) else {
        return err(n, header, "unknown map");
    };
    let ty = match kind {
        MapKind::Verdicts { v4 } => format!(
            "type inet_proto . {} . inet_service : verdict",
            if v4 { "ipv4_addr" } else { "ipv6_addr" }
        ),
        MapKind::Slots { v4, protocol } => {
            let ip = if v4 { "ip" } else { "ip6" };
            let p = protocol.as_str();
            format!("typeof {ip} daddr . {p} dport . numgen random mod 1 : {ip} daddr . {p} dport")
        }
    };
    if !listing.maps.insert(name.to_owned()) {
        return err(n, header, "map listed twice");
    }
    let mut typed = false;
    let mut in_elements = false;
    for (n, line) in lines.by_ref() {
        let mut rest = line;
        if !in_elements {
            if line == "}" {
                return if typed {
                    Ok(())
                } else {
                    err(n, header, "map without its type")
                };
            }
            if line == ty && !typed {
                typed = true;
                continue;
            }
            match line.strip_prefix("elements = {") {
                Some(r) if typed => {
                    in_elements = true;
                    rest = r;
                }
                _ => return err(n, line, format!("expected `{ty}` or `elements = {{`")),
            }
        }
        if let Some(r) = rest.strip_suffix('}') {
            in_elements = false;
            rest = r;
        }
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match kind {
                MapKind::Verdicts { v4 } => {
                    parts.verdicts.push(parse_verdict(n, line, item, v4)?);
                }
                MapKind::Slots { v4, protocol } => {
                    let (service, slot) = parse_slot(n, line, item, v4, protocol)?;
                    parts.slots.entry(service).or_default().push(slot);
                }
            }
        }
    }
    err(n, header, "the map is not closed")
}

/// `tcp . 10.0.0.1 . 80 : goto mod4_tcp_4`, `… : drop`.
fn parse_verdict<'a>(
    n: usize,
    line: &'a str,
    item: &'a str,
    v4: bool,
) -> Result<VerdictElement<'a>, ListingError> {
    let Some((key, verdict)) = item.split_once(" : ") else {
        return err(n, line, format!("element `{item}` without a verdict"));
    };
    let target = match verdict.strip_prefix("goto ") {
        Some(chain) if is_name(chain) => Target::Goto(chain),
        _ if verdict == "drop" => Target::Drop,
        _ => {
            return err(
                n,
                line,
                format!("element `{item}`: expected `goto CHAIN` or `drop`"),
            )
        }
    };
    let mut parts = key.split(" . ");
    let (Some(protocol), Some(addr), Some(port), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return err(
            n,
            line,
            format!("element `{item}`: expected `PROTO . ADDR . PORT`"),
        );
    };
    let (Some(protocol), Some(addr), Some(port)) = (
        parse_protocol(protocol),
        addr.parse::<IpAddr>().ok().filter(|a| a.is_ipv4() == v4),
        port.parse::<u16>().ok(),
    ) else {
        return err(
            n,
            line,
            format!("element `{item}`: bad protocol, address or port"),
        );
    };
    Ok(VerdictElement {
        line: n,
        text: line,
        service: Service::new(protocol, SocketAddr::new(addr, port)),
        target,
    })
}

/// `10.0.0.1 . 80 . 3 : 10.1.0.2 . 8080`.
fn parse_slot<'a>(
    n: usize,
    line: &'a str,
    item: &str,
    v4: bool,
    protocol: Protocol,
) -> Result<(Service, Slot<'a>), ListingError> {
    let parsed = item.split_once(" : ").and_then(|(key, value)| {
        let mut key = key.split(" . ");
        let (addr, port, slot) = (key.next()?, key.next()?, key.next()?);
        let mut value = value.split(" . ");
        let (dest, dest_port) = (value.next()?, value.next()?);
        if key.next().is_some() || value.next().is_some() {
            return None;
        }
        let family = |a: &IpAddr| a.is_ipv4() == v4;
        let service = SocketAddr::new(addr.parse().ok().filter(family)?, port.parse().ok()?);
        let dest = SocketAddr::new(dest.parse().ok().filter(family)?, dest_port.parse().ok()?);
        Some((
            Service::new(protocol, service),
            slot.parse::<u32>().ok()?,
            dest,
        ))
    });
    let Some((service, slot, dest)) = parsed else {
        return err(
            n,
            line,
            format!("element `{item}`: expected `ADDR . PORT . SLOT : ADDR . PORT`"),
        );
    };
    Ok((
        service,
        Slot {
            slot,
            dest,
            line: n,
            text: line,
        },
    ))
}

fn parse_protocol(text: &str) -> Option<Protocol> {
    match text {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        _ => None,
    }
}

/// A modulus chain: exactly one rule, `[meta mark set meta mark | MARK ]dnat ip to ip
/// daddr . tcp dport . numgen random mod N map @d4_tcp` for its family, protocol and `N`.
/// Returns the mark.
fn parse_modulus_chain<'a>(
    n: usize,
    header: &str,
    v4: bool,
    protocol: Protocol,
    modulus: u32,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Option<u32>, ListingError> {
    let ip = if v4 { "ip" } else { "ip6" };
    let expected = format!(
        "dnat {ip} to {ip} daddr . {} dport . numgen random mod {modulus} map @{}",
        protocol.as_str(),
        slot_map(v4, protocol)
    );
    let mut mark: Option<Option<u32>> = None;
    for (n, line) in lines.by_ref() {
        if line == "}" {
            return match mark {
                Some(mark) => Ok(mark),
                None => err(n, header, "modulus chain without its rule"),
            };
        }
        if mark.is_some() {
            return err(n, line, "a modulus chain holds one rule");
        }
        let mut rest = line;
        let mut found = None;
        if let Some(r) = rest.strip_prefix("meta mark set meta mark | ") {
            let (token, r) = r.split_once(' ').unwrap_or((r, ""));
            found = Some(parse_hex(token).ok_or_else(|| ListingError {
                line: n,
                text: line.to_owned(),
                why: format!("bad mark `{token}`"),
            })?);
            rest = r;
        }
        if rest != expected {
            return err(
                n,
                line,
                format!("expected `[meta mark set meta mark | MARK ]{expected}`"),
            );
        }
        mark = Some(found);
    }
    err(n, header, "the chain is not closed")
}

fn parse_hex(token: &str) -> Option<u32> {
    u32::from_str_radix(token.strip_prefix("0x")?, 16).ok()
}

fn parse_chain<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Chain, ListingError> {
    let mut chain = Chain {
        hook: None,
        rules: Vec::new(),
    };
    let mut last = 0;
    for (n, line) in lines.by_ref() {
        last = n;
        if line == "}" {
            return Ok(chain);
        }
        if line.starts_with("type ") {
            if chain.hook.is_some() || !chain.rules.is_empty() {
                return err(n, line, "hook line out of place");
            }
            chain.hook = Some(parse_hook(line).ok_or_else(|| ListingError {
                line: n,
                text: line.to_owned(),
                why: "expected `type T hook H priority P; policy Q;`".into(),
            })?);
        } else {
            chain.rules.push(collapse(line));
        }
    }
    err(last, "", "the chain is not closed")
}

fn parse_hook(line: &str) -> Option<Hook> {
    let rest = line.strip_prefix("type ")?;
    let (kind, rest) = rest.split_once(" hook ")?;
    let (hook, rest) = rest.split_once(" priority ")?;
    let (priority, rest) = rest.split_once("; policy ")?;
    let policy = rest.strip_suffix(';')?;
    Some(Hook {
        kind: kind.to_owned(),
        hook: hook.to_owned(),
        priority: parse_priority(priority)?,
        policy: policy.to_owned(),
    })
}

/// `dstnat`, `filter + 5`, `-100` → the number (values of the `inet` family).
fn parse_priority(text: &str) -> Option<i32> {
    let named = |name: &str| -> Option<i32> {
        Some(match name {
            "raw" => -300,
            "mangle" => -150,
            "dstnat" => -100,
            "filter" => 0,
            "security" => 50,
            "srcnat" => 100,
            other => other.parse().ok()?,
        })
    };
    match text.split(' ').collect::<Vec<_>>()[..] {
        [one] => named(one),
        [base, "+", off] => named(base)?.checked_add(off.parse().ok()?),
        [base, "-", off] => named(base)?.checked_sub(off.parse().ok()?),
        _ => None,
    }
}

fn collapse(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a listing of `render_full(state, config)` shows: representable services, each
/// with its destinations of positive weight and of its family weighted by their number of
/// slots ([`slots`]: the weights themselves unless they sum past `MAX_SLOTS`).
pub fn visible(state: &KernelState, _config: &NftConfig) -> KernelState {
    let services = state
        .services
        .iter()
        .filter(|(service, _)| representable(service))
        .map(|(service, dests)| {
            let visible: Destinations = slots(service, dests).into_iter().collect();
            (*service, Arc::new(visible))
        })
        .collect();
    KernelState { services }
}

/// The chains other than modulus chains that `render_full` installs for `config`, as
/// `nft` lists them.
pub fn expected_chains(config: &NftConfig) -> BTreeMap<String, Chain> {
    let hook = |kind: &str, hook: &str, priority: i32| {
        Some(Hook {
            kind: kind.into(),
            hook: hook.into(),
            priority,
            policy: "accept".into(),
        })
    };
    let mut chains = BTreeMap::new();
    for name in ["prerouting", "output"] {
        chains.insert(
            name.to_owned(),
            Chain {
                hook: hook("nat", name, -100),
                rules: vec![
                    format!("meta l4proto . ip daddr . th dport vmap @{MAP4}"),
                    format!("meta l4proto . ip6 daddr . th dport vmap @{MAP6}"),
                ],
            },
        );
    }
    if let Some(m) = config.effective_masquerade_mark() {
        chains.insert(
            "postrouting".to_owned(),
            Chain {
                hook: hook("nat", "postrouting", 100),
                rules: vec![format!(
                    "meta mark & {m:#010x} == {m:#010x} meta mark set meta mark ^ {m:#010x} masquerade"
                )],
            },
        );
    }
    if let Some(m) = config.effective_reject_mark() {
        chains.insert(
            NO_DESTINATION.to_owned(),
            Chain {
                hook: None,
                rules: vec![format!("meta mark set meta mark | {m:#010x}")],
            },
        );
        for name in ["forward", "output"] {
            chains.insert(
                format!("reject_{name}"),
                Chain {
                    hook: hook("filter", name, 0),
                    rules: vec![
                        format!("meta mark & {m:#010x} == {m:#010x} meta l4proto tcp reject with tcp reset"),
                        format!("meta mark & {m:#010x} == {m:#010x} reject"),
                    ],
                },
            );
        }
    }
    chains
}

/// The form the rendering gives a service with (`live`) or without live destinations.
pub fn expected_form(config: &NftConfig, live: bool) -> RuleForm {
    if live {
        RuleForm::Dnat {
            mark: config.effective_masquerade_mark(),
        }
    } else {
        match config.effective_reject_mark() {
            Some(mark) => RuleForm::Reject { mark },
            None => RuleForm::Drop,
        }
    }
}

/// Whether `listing` is what `render_full(committed, config)` leaves in the kernel; the
/// first difference found otherwise.
pub fn compare(
    listing: &Listing,
    committed: &KernelState,
    config: &NftConfig,
) -> Result<(), String> {
    if listing.table != config.table_name() {
        return Err(format!("table {} listed", listing.table));
    }
    for map in [MAP4, MAP6].into_iter().chain(SLOT_MAPS) {
        if !listing.maps.contains(map) {
            return Err(format!("map {map} is missing"));
        }
    }
    let expected = expected_chains(config);
    for (name, chain) in &expected {
        match listing.chains.get(name) {
            None => return Err(format!("chain {name} is missing")),
            Some(found) if found != chain => {
                return Err(format!(
                    "chain {name} differs: {found:?}, expected {chain:?}"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = listing.chains.keys().find(|n| !expected.contains_key(*n)) {
        return Err(format!("unexpected chain {name}"));
    }
    let want = visible(committed, config);
    let mut moduli = BTreeSet::new();
    for (service, dests) in &want.services {
        match listing.state.services.get(service) {
            None => return Err(format!("service {service} is missing")),
            Some(found) if found != dests => {
                return Err(format!(
                    "service {service} has {found:?}, committed {dests:?}"
                ))
            }
            Some(_) => {}
        }
        let form = expected_form(config, !dests.is_empty());
        if listing.forms.get(service) != Some(&form) {
            return Err(format!(
                "service {service} has rule form {:?}, expected {form:?}",
                listing.forms.get(service)
            ));
        }
        let total: u32 = dests.values().sum();
        if total > 0 {
            moduli.insert(modulus_chain(
                service.addr.is_ipv4(),
                service.protocol,
                total,
            ));
        }
    }
    if let Some(service) = listing
        .state
        .services
        .keys()
        .find(|s| !want.services.contains_key(*s))
    {
        return Err(format!("service {service} is not committed"));
    }
    if let Some(name) = listing.moduli.keys().find(|n| !moduli.contains(*n)) {
        return Err(format!("unexpected chain {name}"));
    }
    // Every modulus chain a committed service uses is listed (its element goes there),
    // so only the marks are left to check.
    let mark = config.effective_masquerade_mark();
    if let Some((name, found)) = listing.moduli.iter().find(|(_, m)| **m != mark) {
        return Err(format!(
            "chain {name} sets mark {found:?}, expected {mark:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As nft 1.0.6 lists a table of two services (one without destinations), default
    /// marks, without the output and reject chains.
    const BASE: &str = "table inet minuteman {
\tmap services4 {
\t\ttype inet_proto . ipv4_addr . inet_service : verdict
\t\telements = { udp . 10.0.0.2 . 53 : goto no_destination,
\t\t\t     tcp . 10.0.0.1 . 80 : goto mod4_tcp_4 }
\t}

\tmap services6 {
\t\ttype inet_proto . ipv6_addr . inet_service : verdict
\t}

\tmap d4_tcp {
\t\ttypeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
\t\telements = { 10.0.0.1 . 80 . 0 : 10.1.0.1 . 8080,
\t\t\t     10.0.0.1 . 80 . 1 : 10.1.0.2 . 8080,
\t\t\t     10.0.0.1 . 80 . 2 : 10.1.0.2 . 8080,
\t\t\t     10.0.0.1 . 80 . 3 : 10.1.0.2 . 8080 }
\t}

\tmap d4_udp {
\t\ttypeof ip daddr . udp dport . numgen random mod 1 : ip daddr . udp dport
\t}

\tmap d6_tcp {
\t\ttypeof ip6 daddr . tcp dport . numgen random mod 1 : ip6 daddr . tcp dport
\t}

\tmap d6_udp {
\t\ttypeof ip6 daddr . udp dport . numgen random mod 1 : ip6 daddr . udp dport
\t}

\tchain no_destination {
\t\tmeta mark set meta mark | 0x00200000
\t}

\tchain mod4_tcp_4 {
\t\tmeta mark set meta mark | 0x00100000 dnat ip to ip daddr . tcp dport . numgen random mod 4 map @d4_tcp
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tmeta l4proto . ip daddr . th dport vmap @services4
\t\tmeta l4proto . ip6 daddr . th dport vmap @services6
\t}
}
";

    fn service(proto: Protocol, addr: &str) -> Service {
        Service::new(proto, addr.parse().unwrap())
    }

    #[test]
    fn the_base_listing_reads_as_its_services() {
        let listing = parse(BASE).unwrap();
        assert_eq!(listing.table, "minuteman");
        let web = service(Protocol::Tcp, "10.0.0.1:80");
        let dns = service(Protocol::Udp, "10.0.0.2:53");
        assert_eq!(
            *listing.state.services[&web],
            [
                ("10.1.0.1:8080".parse().unwrap(), 1),
                ("10.1.0.2:8080".parse().unwrap(), 3)
            ]
            .into_iter()
            .collect::<Destinations>()
        );
        assert!(listing.state.services[&dns].is_empty());
        assert_eq!(
            listing.forms[&web],
            RuleForm::Dnat {
                mark: Some(0x0010_0000)
            }
        );
        assert_eq!(listing.forms[&dns], RuleForm::Reject { mark: 0x0020_0000 });
        assert_eq!(
            listing.moduli.keys().collect::<Vec<_>>(),
            ["mod4_tcp_4"],
            "{listing:?}"
        );
        assert_eq!(
            listing.chains["prerouting"].hook.as_ref().unwrap().priority,
            -100
        );
        assert_eq!(listing.maps.len(), 6);
        // Only prerouting is there: the comparison names what is missing.
        let err = compare(&listing, &listing.state, &NftConfig::default()).unwrap_err();
        assert!(err.contains("chain output is missing"), "{err}");
    }

    /// Each case replaces one line of [`BASE`] (1-based), and must be refused at `line`.
    #[test]
    fn what_is_not_the_rendering_is_refused_with_its_line() {
        let rule = "meta mark set meta mark | 0x00100000 dnat ip to ip daddr . tcp dport . numgen random mod 4 map @d4_tcp";
        let mod5 = rule.replace("mod 4", "mod 5");
        let udp_map = rule.replace("@d4_tcp", "@d4_udp");
        let ip6 = rule.replace("dnat ip to ip daddr", "dnat ip6 to ip6 daddr");
        let bad_mark = rule.replace("0x00100000", "0xzz");
        let cases: &[(usize, &str, usize, &str)] = &[
            (1, "table ip minuteman {", 1, "table inet"),
            (2, "\tset services4 {", 2, "expected `map`"),
            (2, "\tmap other {", 2, "unknown map"),
            (3, "\t\ttype ipv4_addr : verdict", 3, "expected `type"),
            (
                4,
                "\t\telements = { udp . 10.0.0.2 . 53 : jump no_destination,",
                4,
                "goto",
            ),
            (
                5,
                "\t\t\t     sctp . 10.0.0.1 . 80 : goto mod4_tcp_4 }",
                5,
                "bad protocol",
            ),
            (
                5,
                "\t\t\t     tcp . fd00::1 . 80 : goto mod4_tcp_4 }",
                5,
                "bad protocol",
            ),
            (
                5,
                "\t\t\t     tcp . 10.0.0.1 . 99999 : goto mod4_tcp_4 }",
                5,
                "bad protocol",
            ),
            (
                5,
                "\t\t\t     tcp . 10.0.0.9 . 80 : goto mod4_tcp_4 }",
                5,
                "its chain wants 4",
            ),
            (
                5,
                "\t\t\t     tcp . 10.0.0.1 . 80 : goto mod4_tcp_5 }",
                5,
                "not listed",
            ),
            (
                5,
                "\t\t\t     tcp . 10.0.0.1 . 80 : goto prerouting }",
                5,
                "not a modulus chain",
            ),
            (
                5,
                "\t\t\t     udp . 10.0.0.1 . 80 : goto mod4_tcp_4 }",
                5,
                "another family or protocol",
            ),
            (
                5,
                "\t\t\t     tcp . 10.0.0.1 . 80 : drop }",
                14,
                "has no destination",
            ),
            (
                13,
                "\t\ttypeof ip daddr . th dport . numgen random mod 1 : ip daddr . th dport",
                13,
                "expected `typeof",
            ),
            (
                14,
                "\t\telements = { 10.0.0.1 . 80 . 4 : 10.1.0.1 . 8080,",
                15,
                "do not cover 0..4",
            ),
            (
                15,
                "\t\t\t     10.0.0.1 . 80 . 0 : 10.1.0.2 . 8080,",
                15,
                "do not cover 0..4",
            ),
            (
                15,
                "\t\t\t     10.0.0.1 . 80 . x : 10.1.0.2 . 8080,",
                15,
                "expected `ADDR",
            ),
            (
                15,
                "\t\t\t     fd00::1 . 80 . 1 : 10.1.0.2 . 8080,",
                15,
                "expected `ADDR",
            ),
            (
                15,
                "\t\t\t     10.0.0.1 . 80 . 1 : 10.1.0.2 . 8080 . 1,",
                15,
                "expected `ADDR",
            ),
            (
                17,
                "\t\t\t     10.0.0.1 . 80 . 3 : 10.1.0.1 . 8080 }",
                17,
                "rendering's order",
            ),
            (
                17,
                "\t\t\t     10.0.0.2 . 80 . 3 : 10.1.0.1 . 8080 }",
                5,
                "has 3 slots",
            ),
            (33, "\t\tmeta mark set meta mark | 0xzz", 32, "the one rule"),
            (36, "\tchain mod4_tcp_04 {", 5, "not listed"),
            (
                37,
                "\t\tmeta l4proto tcp dnat ip to 10.1.0.1",
                37,
                "expected `[meta mark",
            ),
            (37, &bad_mark, 37, "bad mark"),
            (37, &mod5, 37, "expected `[meta mark"),
            (37, &udp_map, 37, "expected `[meta mark"),
            (37, &ip6, 37, "expected `[meta mark"),
            (38, "\t\tdrop", 38, "one rule"),
            (
                41,
                "\t\ttype nat hook prerouting priority bogus; policy accept;",
                41,
                "expected `type",
            ),
            (45, "}\n}", 46, "after the end"),
            (45, "", 44, "not closed"),
        ];
        let base: Vec<&str> = BASE.lines().collect();
        assert_eq!(base.len(), 45);
        for &(replace, with, line, why) in cases {
            let mut lines = base.clone();
            lines[replace - 1] = with;
            let text = lines.join("\n");
            match parse(&text) {
                Ok(l) => panic!("accepted `{with}`: {l:?}"),
                Err(e) => {
                    assert!(
                        e.line == line && e.why.contains(why),
                        "`{with}`: expected line {line} ({why}), got {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_and_numbers_are_both_read() {
        assert_eq!(parse_priority("dstnat"), Some(-100));
        assert_eq!(parse_priority("srcnat"), Some(100));
        assert_eq!(parse_priority("filter + 5"), Some(5));
        assert_eq!(parse_priority("mangle - 1"), Some(-151));
        assert_eq!(parse_priority("-100"), Some(-100));
        assert_eq!(parse_priority("nat"), None);
        assert_eq!(parse_protocol("6"), Some(Protocol::Tcp));
        assert_eq!(parse_protocol("17"), Some(Protocol::Udp));
        let numeric = BASE
            .replace("tcp . 10.0.0.1", "6 . 10.0.0.1")
            .replace("udp . 10.0.0.2", "17 . 10.0.0.2");
        assert_eq!(parse(&numeric).unwrap(), parse(BASE).unwrap());
    }

    #[test]
    fn modulus_chain_names_read_back_exactly() {
        assert_eq!(modulus_name("mod4_tcp_4"), Some((true, Protocol::Tcp, 4)));
        assert_eq!(
            modulus_name("mod6_udp_1024"),
            Some((false, Protocol::Udp, 1024))
        );
        for name in [
            "mod4_tcp_0",
            "mod4_tcp_04",
            "mod5_tcp_4",
            "mod4_sctp_4",
            "mod4_tcp",
            "mod4__4",
            "mod4_tcp_+4",
        ] {
            assert_eq!(modulus_name(name), None, "{name}");
        }
    }

    #[test]
    fn visible_scales_like_the_rendering() {
        let web = service(Protocol::Tcp, "10.0.0.1:80");
        let (a, b, c) = (
            "10.1.0.1:80".parse().unwrap(),
            "10.1.0.2:80".parse().unwrap(),
            "[fd00::1]:80".parse().unwrap(),
        );
        let state = KernelState {
            services: [(
                web,
                Arc::new([(a, u32::MAX), (b, 1), (c, 5)].into_iter().collect()),
            )]
            .into_iter()
            .collect(),
        };
        let shown = visible(&state, &NftConfig::default());
        // Past MAX_SLOTS (1024): 1 + (w - 1)(1024 - 2) / (sum - 2); b keeps one slot, the
        // other family none.
        assert_eq!(
            *shown.services[&web],
            [(a, 1023), (b, 1)].into_iter().collect::<Destinations>()
        );
        assert_eq!(visible(&shown, &NftConfig::default()), shown);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "}",
            "table inet x {",
            "table inet x {\n\tchain a {\n",
            "table inet x {\n\tchain mod4_tcp_1 {\n",
            "table inet x {\n\tmap d4_tcp {\n",
            "\u{0}\n\t{ }",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }
}
