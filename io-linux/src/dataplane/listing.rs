//! Reading the kernel back: the text `nft list table inet <name>` prints for the core's
//! rendering ([`minuteman_core::kernel::nft`]) parsed into a [`Listing`] ([`parse`]), what a
//! listing can show of a [`KernelState`] ([`visible`]), the fixed chains the rendering
//! installs ([`expected_chains`]), and the comparison of a listing with a committed state
//! ([`compare`]). Pure: no IO.
//!
//! Invariants:
//! - [`parse`] never panics; any line it does not recognise as part of the core's rendering
//!   (unknown statement, map, set, malformed address, a service chain without its map
//!   element or the reverse, ranges that do not tile `0..mod`) is an error naming the line.
//! - A service's destinations are the ones its rule's `numgen` map names; the weight of a
//!   destination is the size of its range. The rendering scales weights down only when
//!   they sum past `u32::MAX`, so below that a listing gives the committed weights back
//!   exactly; [`visible`] applies the same scaling so the two compare equal either way.
//! - Destinations of weight 0 (drained) and of the other address family get no range, so
//!   no listing shows them: [`visible`] leaves them out, and a service whose rule rejects
//!   (or drops) has no destinations.
//! - `parse(listing of render_full(s))` == `visible(s)`, and [`compare`] accepts it.
//! - Accepts both nft's names and numbers where `nft` may print either (`tcp`/`6`,
//!   `dstnat`/`-100`).

use minuteman_core::kernel::nft::{chain_name, representable, NftConfig, MAP4, MAP6};
use minuteman_core::kernel::{Destinations, KernelState, Service};
use minuteman_core::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// What `nft list table` showed, in the core's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The table's name, from its first line.
    pub table: String,
    /// Services with a map element, their chain and a rule the rendering makes.
    pub state: KernelState,
    /// The form of each service's rule (which marks it sets), to compare with the config.
    pub forms: BTreeMap<Service, RuleForm>,
    /// The verdict maps present (with the type the rendering gives them).
    pub maps: BTreeSet<String>,
    /// Every chain that is not a service chain, by name.
    pub chains: BTreeMap<String, Chain>,
}

/// The shape of a service chain's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleForm {
    /// Weighted DNAT, setting the masquerade mark when there is one.
    Dnat { mark: Option<u32> },
    /// No live destination: sets the reject mark.
    Reject { mark: u32 },
    /// No live destination and no reject mark: drop.
    Drop,
}

/// A chain other than a service chain: its hook line and its rules, whitespace collapsed.
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

/// A service chain as read, before it is matched with its map element.
struct ServiceChain {
    line: usize,
    header: String,
    rule: Option<Rule>,
}

/// A service rule as read: the protocol and family it DNATs (none for reject or drop),
/// its destinations and its form.
struct Rule {
    l4: Option<(Protocol, bool)>,
    dests: Destinations,
    form: RuleForm,
}

/// A map element as read.
struct Element {
    line: usize,
    text: String,
    service: Service,
    chain: String,
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
    let mut elements: Vec<Element> = Vec::new();
    let mut service_chains: BTreeMap<String, ServiceChain> = BTreeMap::new();
    let mut closed = false;
    while let Some((n, line)) = lines.next() {
        if closed {
            return err(n, line, "text after the end of the table");
        }
        if line == "}" {
            closed = true;
        } else if let Some(name) = block(line, "map ") {
            parse_map(n, line, name, &mut lines, &mut listing, &mut elements)?;
        } else if let Some(name) = block(line, "chain ") {
            if name.starts_with("svc_") {
                let chain = parse_service_chain(n, line, &mut lines)?;
                if service_chains.insert(name.to_owned(), chain).is_some() {
                    return err(n, line, "chain listed twice");
                }
            } else {
                let chain = parse_chain(&mut lines)?;
                if listing.chains.insert(name.to_owned(), chain).is_some() {
                    return err(n, line, "chain listed twice");
                }
            }
        } else {
            return err(n, line, "expected `map`, `chain` or `}`");
        }
    }
    if !closed {
        return err(text.lines().count(), "", "the table is not closed");
    }
    // Join elements with their chains: every element goes to the chain named after its
    // service, every service chain is reached by exactly one element.
    for element in elements {
        let Some(chain) = service_chains.remove(&element.chain) else {
            return err(
                element.line,
                &element.text,
                "the element goes to a chain that is not listed",
            );
        };
        let service = element.service;
        let Some(Rule { l4, dests, form }) = chain.rule else {
            return err(chain.line, &chain.header, "service chain without its rule");
        };
        if element.chain != chain_name(&service) {
            return err(
                element.line,
                &element.text,
                format!("the element should go to {}", chain_name(&service)),
            );
        }
        if l4.is_some_and(|l4| l4 != (service.protocol, service.addr.is_ipv4())) {
            return err(
                chain.line,
                &chain.header,
                "the rule's protocol or address family is not its service's",
            );
        }
        if listing.state.services.insert(service, dests).is_some() {
            return err(element.line, &element.text, "service listed twice");
        }
        listing.forms.insert(service, form);
    }
    if let Some(chain) = service_chains.into_values().next() {
        return err(
            chain.line,
            &chain.header,
            "no map element goes to this chain",
        );
    }
    Ok(listing)
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

fn parse_map<'a>(
    n: usize,
    header: &str,
    name: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    listing: &mut Listing,
    elements: &mut Vec<Element>,
) -> Result<(), ListingError> {
    let ty = match name {
        MAP4 => "type inet_proto . ipv4_addr . inet_service : verdict",
        MAP6 => "type inet_proto . ipv6_addr . inet_service : verdict",
        _ => return err(n, header, "unknown map"),
    };
    if !listing.maps.insert(name.to_owned()) {
        return err(n, header, "map listed twice");
    }
    let v4 = name == MAP4;
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
            elements.push(parse_element(n, line, item, v4)?);
        }
    }
    err(n, header, "the map is not closed")
}

/// `tcp . 10.0.0.1 . 80 : goto svc_tcp_10_0_0_1_80`.
fn parse_element(n: usize, line: &str, item: &str, v4: bool) -> Result<Element, ListingError> {
    let Some((key, verdict)) = item.split_once(" : ") else {
        return err(n, line, format!("element `{item}` without a verdict"));
    };
    let Some(chain) = verdict.strip_prefix("goto ").filter(|c| is_name(c)) else {
        return err(n, line, format!("element `{item}`: expected `goto CHAIN`"));
    };
    let parts: Vec<&str> = key.split(" . ").collect();
    let [protocol, addr, port] = parts[..] else {
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
    Ok(Element {
        line: n,
        text: line.to_owned(),
        service: Service::new(protocol, SocketAddr::new(addr, port)),
        chain: chain.to_owned(),
    })
}

fn parse_protocol(text: &str) -> Option<Protocol> {
    match text {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        _ => None,
    }
}

fn parse_service_chain<'a>(
    n: usize,
    header: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<ServiceChain, ListingError> {
    let mut chain = ServiceChain {
        line: n,
        header: header.to_owned(),
        rule: None,
    };
    for (n, line) in lines.by_ref() {
        if line == "}" {
            return Ok(chain);
        }
        if chain.rule.is_some() {
            return err(n, line, "a service chain holds one rule");
        }
        chain.rule = Some(parse_service_rule(n, line)?);
    }
    err(n, header, "the chain is not closed")
}

/// The one rule of a service chain.
fn parse_service_rule(n: usize, line: &str) -> Result<Rule, ListingError> {
    let mut rest = line;
    let mut mark = None;
    if let Some(r) = rest.strip_prefix("meta mark set meta mark | ") {
        let (token, r) = r.split_once(' ').unwrap_or((r, ""));
        mark = Some(parse_hex(token).ok_or_else(|| ListingError {
            line: n,
            text: line.to_owned(),
            why: format!("bad mark `{token}`"),
        })?);
        rest = r;
    }
    match (rest, mark) {
        ("", Some(mark)) => return Ok(Rule::empty(RuleForm::Reject { mark })),
        ("drop", None) => return Ok(Rule::empty(RuleForm::Drop)),
        _ => {}
    }
    let bad = |why: &str| err(n, line, why.to_owned());
    let Some((head, map)) = rest.split_once(" map {") else {
        return bad("expected a reject mark, `drop` or `... numgen random mod N map { ... }`");
    };
    let words: Vec<&str> = head.split(' ').collect();
    let ["meta", "l4proto", protocol, "dnat", family, "to", "numgen", "random", "mod", modulus] =
        words[..]
    else {
        return bad("expected `meta l4proto P dnat ip|ip6 to numgen random mod N map { ... }`");
    };
    let Some(protocol) = parse_protocol(protocol) else {
        return bad("unknown l4proto");
    };
    let v4 = match family {
        "ip" => true,
        "ip6" => false,
        _ => return bad("expected `dnat ip` or `dnat ip6`"),
    };
    let Ok(modulus) = modulus.parse::<u64>() else {
        return bad("bad numgen modulus");
    };
    let Some(map) = map.strip_suffix('}') else {
        return bad("the numgen map is not closed");
    };
    let mut ranges: Vec<(u64, u64, SocketAddr)> = Vec::new();
    for item in map.split(',').map(str::trim) {
        let parsed = item.split_once(" : ").and_then(|(range, dest)| {
            let (low, high) = match range.split_once('-') {
                Some((l, h)) => (l.parse::<u64>().ok()?, h.parse::<u64>().ok()?),
                None => {
                    let v = range.parse::<u64>().ok()?;
                    (v, v)
                }
            };
            let (addr, port) = dest.split_once(" . ")?;
            let addr = addr.parse::<IpAddr>().ok().filter(|a| a.is_ipv4() == v4)?;
            let port = port.parse::<u16>().ok()?;
            (low <= high).then_some((low, high, SocketAddr::new(addr, port)))
        });
        let Some(range) = parsed else {
            return err(n, line, format!("bad numgen map entry `{item}`"));
        };
        ranges.push(range);
    }
    ranges.sort_unstable();
    let mut dests = Destinations::new();
    let mut next = 0u64;
    for (low, high, dest) in ranges {
        if low != next {
            return bad("the numgen ranges do not tile 0..mod");
        }
        let width = u32::try_from(high - low + 1).map_err(|_| ListingError {
            line: n,
            text: line.to_owned(),
            why: "numgen range wider than u32".into(),
        })?;
        if dests.insert(dest, width).is_some() {
            return err(n, line, format!("destination {dest} has two ranges"));
        }
        next = high + 1;
    }
    if next != modulus || modulus == 0 {
        return bad("the numgen ranges do not tile 0..mod");
    }
    Ok(Rule {
        l4: Some((protocol, v4)),
        dests,
        form: RuleForm::Dnat { mark },
    })
}

impl Rule {
    fn empty(form: RuleForm) -> Rule {
        Rule {
            l4: None,
            dests: Destinations::new(),
            form,
        }
    }
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

/// What a listing of `render_full(state, config)` shows: representable services,
/// destinations of positive weight and of the service's family, weights scaled as the
/// rendering scales them when they sum past `u32::MAX`.
pub fn visible(state: &KernelState, _config: &NftConfig) -> KernelState {
    let limit = u64::from(u32::MAX);
    let services = state
        .services
        .iter()
        .filter(|(service, _)| representable(service))
        .map(|(service, dests)| {
            let v4 = service.addr.is_ipv4();
            let live: Vec<(SocketAddr, u32)> = dests
                .iter()
                .filter(|(dest, &w)| w > 0 && dest.is_ipv4() == v4)
                .map(|(d, &w)| (*d, w))
                .collect();
            let total: u64 = live.iter().map(|&(_, w)| u64::from(w)).sum();
            let divisor = if total > limit {
                total.div_ceil(limit / 2)
            } else {
                1
            };
            let mut shown = Destinations::new();
            let mut next: u64 = 0;
            for (dest, w) in live {
                let width = (u64::from(w) / divisor).max(1);
                let last = next.saturating_add(width - 1);
                if last >= limit {
                    break;
                }
                // width ≤ u32::MAX here: it fits.
                shown.insert(dest, u32::try_from(width).unwrap_or(u32::MAX));
                next = last + 1;
            }
            (*service, shown)
        })
        .collect();
    KernelState { services }
}

/// The chains other than service chains that `render_full` installs for `config`, as
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

/// The rule form the rendering gives a service with (`live`) or without live destinations.
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
    for map in [MAP4, MAP6] {
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
    }
    if let Some(service) = listing
        .state
        .services
        .keys()
        .find(|s| !want.services.contains_key(*s))
    {
        return Err(format!("service {service} is not committed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As nft 1.0.6 lists a table of two services (one rejecting), default marks.
    const BASE: &str = "table inet minuteman {
\tmap services4 {
\t\ttype inet_proto . ipv4_addr . inet_service : verdict
\t\telements = { tcp . 10.0.0.1 . 80 : goto svc_tcp_10_0_0_1_80,
\t\t\t     udp . 10.0.0.2 . 53 : goto svc_udp_10_0_0_2_53 }
\t}

\tmap services6 {
\t\ttype inet_proto . ipv6_addr . inet_service : verdict
\t}

\tchain svc_tcp_10_0_0_1_80 {
\t\tmeta mark set meta mark | 0x00100000 meta l4proto tcp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.2 . 8080 }
\t}

\tchain svc_udp_10_0_0_2_53 {
\t\tmeta mark set meta mark | 0x00200000
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
            listing.state.services[&web],
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
            listing.chains["prerouting"].hook.as_ref().unwrap().priority,
            -100
        );
        // Only prerouting is there: the comparison names what is missing.
        let err = compare(&listing, &listing.state, &NftConfig::default()).unwrap_err();
        assert!(err.contains("chain output is missing"), "{err}");
    }

    /// Each case replaces one line of [`BASE`] (1-based), and must be refused at `line`.
    #[test]
    fn what_is_not_the_rendering_is_refused_with_its_line() {
        let cases: &[(usize, &str, usize, &str)] = &[
            (1, "table ip minuteman {", 1, "table inet"),
            (2, "\tset services4 {", 2, "expected `map`"),
            (2, "\tmap other {", 2, "unknown map"),
            (3, "\t\ttype ipv4_addr : verdict", 3, "expected `type"),
            (4, "\t\telements = { tcp . 10.0.0.1 . 80 : jump svc_tcp_10_0_0_1_80,", 4, "goto"),
            (4, "\t\telements = { sctp . 10.0.0.1 . 80 : goto svc_tcp_10_0_0_1_80,", 4, "bad protocol"),
            (4, "\t\telements = { tcp . fd00::1 . 80 : goto svc_tcp_10_0_0_1_80,", 4, "bad protocol"),
            (4, "\t\telements = { tcp . 10.0.0.1 . 99999 : goto svc_tcp_10_0_0_1_80,", 4, "bad protocol"),
            (4, "\t\telements = { tcp . 10.0.0.9 . 80 : goto svc_tcp_10_0_0_1_80,", 4, "should go to"),
            (5, "\t\t\t     udp . 10.0.0.2 . 53 : goto svc_udp_10_0_0_2_54 }", 5, "not listed"),
            (13, "\t\tmeta l4proto tcp dnat ip to 10.1.0.1", 13, "expected a reject mark"),
            (13, "\t\tcounter packets 0 bytes 0", 13, "expected a reject mark"),
            (13, "\t\tmeta mark set meta mark | 0xzz", 13, "bad mark"),
            (13, "\t\tmeta l4proto udp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.2 . 8080 }", 12, "protocol or address family"),
            (13, "\t\tmeta l4proto tcp dnat ip6 to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.2 . 8080 }", 13, "bad numgen map entry"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 5 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.2 . 8080 }", 13, "tile"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 2-3 : 10.1.0.2 . 8080 }", 13, "tile"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.1 . 8080 }", 13, "two ranges"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 3-1 : 10.1.0.2 . 8080 }", 13, "bad numgen map entry"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 4 map { 0 : 10.1.0.1 . 8080, 1-3 : 10.1.0.2 . 8080", 13, "not closed"),
            (13, "\t\tmeta l4proto tcp dnat ip to numgen random mod 0 map { }", 13, "bad numgen map entry"),
            (14, "\t\tdrop", 14, "one rule"),
            (21, "\t\ttype nat hook prerouting priority bogus; policy accept;", 21, "expected `type"),
            (25, "}\n}", 26, "after the end"),
            (25, "", 24, "not closed"),
        ];
        let base: Vec<&str> = BASE.lines().collect();
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
            .replace("meta l4proto tcp", "meta l4proto 6");
        assert_eq!(parse(&numeric).unwrap(), parse(BASE).unwrap());
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
            services: [(web, [(a, u32::MAX), (b, 1), (c, 5)].into_iter().collect())]
                .into_iter()
                .collect(),
        };
        let shown = visible(&state, &NftConfig::default());
        // total 2^32: divisor ceil(2^32 / (2^31 - 1)) = 3; b keeps one value.
        assert_eq!(
            shown.services[&web],
            [(a, u32::MAX / 3), (b, 1)]
                .into_iter()
                .collect::<Destinations>()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "}",
            "table inet x {",
            "table inet x {\n\tchain a {\n",
            "\u{0}\n\t{ }",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }
}
