//! The VIP label grammar: `HOST:PORT` port labels, `tcp://HOST:PORT` task labels, protocols,
//! and the DNS form of named VIPs.
//!
//! Invariants:
//! - Pure string functions; nothing here panics, whatever the input (all slicing is by
//!   `split`/`strip`, never by index).
//! - `HOST:PORT` splits on the last `:`; a host that parses as an IP address (optionally in
//!   brackets) is an IP VIP, anything else is a name. A name containing `:`, `[` or `]`, or
//!   one with no DNS-usable character, is malformed rather than guessed at.
//! - A port is 1 to 65535 written in 1 to 5 ASCII digits; anything else is malformed.
//! - [`named_vip`] is deterministic and yields only `[a-z0-9-]` labels of 1 to 63
//!   characters joined with dots.

use crate::vip::Protocol;
use std::fmt;
use std::net::IpAddr;

/// The host part of a VIP label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipHost {
    Ip(IpAddr),
    /// As written in the label (`/web`, `merp`); [`named_vip`] makes it a DNS name.
    Name(String),
}

/// Why a VIP label value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelError {
    /// No `:PORT`.
    MissingPort,
    /// The port is not 1–65535.
    InvalidPort(String),
    /// The host is neither an IP address nor a usable name.
    InvalidHost(String),
    /// Not `tcp` or `udp` (a port's protocol, or a task label's scheme).
    UnknownProtocol(String),
    /// A task label value without `tcp://` or `udp://`.
    MissingProtocol,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::MissingPort => f.write_str("no port (expected HOST:PORT)"),
            LabelError::InvalidPort(port) => {
                write!(f, "invalid port {port:?} (expected 1-65535)")
            }
            LabelError::InvalidHost(host) => write!(f, "invalid host {host:?}"),
            LabelError::UnknownProtocol(p) => write!(f, "unknown protocol {p:?}"),
            LabelError::MissingProtocol => {
                f.write_str("no protocol (expected tcp://HOST:PORT or udp://HOST:PORT)")
            }
        }
    }
}

/// `tcp` or `udp`, in any case.
pub fn parse_protocol(text: &str) -> Result<Protocol, LabelError> {
    if text.eq_ignore_ascii_case("tcp") {
        Ok(Protocol::Tcp)
    } else if text.eq_ignore_ascii_case("udp") {
        Ok(Protocol::Udp)
    } else {
        Err(LabelError::UnknownProtocol(text.to_string()))
    }
}

/// A port: 1 to 5 ASCII digits, value 1–65535.
pub fn parse_port(text: &str) -> Result<u16, LabelError> {
    let valid_digits =
        !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if valid_digits && port != 0 => Ok(port),
        _ => Err(LabelError::InvalidPort(text.to_string())),
    }
}

/// A port label value: `HOST:PORT`, split on the last `:`.
pub fn parse_vip(value: &str) -> Result<(VipHost, u16), LabelError> {
    let value = value.trim();
    let (host, port) = value.rsplit_once(':').ok_or(LabelError::MissingPort)?;
    let port = parse_port(port)?;
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Ok(ip) = bracketed.unwrap_or(host).parse::<IpAddr>() {
        return Ok((VipHost::Ip(ip), port));
    }
    let usable = host.contains(|c: char| c.is_ascii_alphanumeric());
    if bracketed.is_some() || host.contains([':', '[', ']']) || !usable {
        return Err(LabelError::InvalidHost(host.to_string()));
    }
    Ok((VipHost::Name(host.to_string()), port))
}

/// A task label value: `tcp://HOST:PORT` or `udp://HOST:PORT`.
pub fn parse_task_vip(value: &str) -> Result<(Protocol, VipHost, u16), LabelError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once("://").ok_or(LabelError::MissingProtocol)?;
    let protocol = parse_protocol(scheme)?;
    let (host, port) = parse_vip(rest)?;
    Ok((protocol, host, port))
}

/// `N` of a task label key `VIP_PORT<N>` (any case); `None` for any other key.
pub fn vip_port_index(key: &str) -> Option<u64> {
    let prefix = key.get(..8)?;
    let digits = key.get(8..)?;
    if !prefix.eq_ignore_ascii_case("VIP_PORT")
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

/// Appends the DNS labels of `text` to `out`: split on `.`, lower case, `_` → `-`, only
/// `[a-z0-9-]` kept, at most 63 characters each, empty labels dropped.
fn push_dns_labels(out: &mut String, text: &str) {
    for part in text.split('.') {
        let label: String = part
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | '0'..='9' | '-' => Some(c),
                'A'..='Z' => Some(c.to_ascii_lowercase()),
                '_' => Some('-'),
                _ => None,
            })
            .take(63)
            .collect();
        if label.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&label);
    }
}

/// `text` turned into DNS labels joined with dots (`My_App.grp` → `my-app.grp`); `None` if
/// nothing is left.
pub fn dns_labels(text: &str) -> Option<String> {
    let mut name = String::new();
    push_dns_labels(&mut name, text);
    (!name.is_empty()).then_some(name)
}

/// The name of a named VIP: the label host and the framework name, each turned into DNS
/// labels, joined with dots (`/api.hello-world` on `marathon` → `api.hello-world.marathon`).
/// `None` if either yields no label.
pub fn named_vip(host: &str, framework: &str) -> Option<String> {
    let mut name = String::new();
    push_dns_labels(&mut name, host);
    if name.is_empty() {
        return None;
    }
    let host_len = name.len();
    push_dns_labels(&mut name, framework);
    if name.len() == host_len {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> VipHost {
        VipHost::Ip(s.parse().unwrap())
    }

    fn name(s: &str) -> VipHost {
        VipHost::Name(s.to_string())
    }

    #[test]
    fn port_labels() {
        assert_eq!(parse_vip("1.2.3.4:5000"), Ok((ip("1.2.3.4"), 5000)));
        assert_eq!(parse_vip("fd01:d::1:80"), Ok((ip("fd01:d::1"), 80)));
        assert_eq!(parse_vip("[fd01:d::1]:80"), Ok((ip("fd01:d::1"), 80)));
        assert_eq!(parse_vip("/web:80"), Ok((name("/web"), 80)));
        assert_eq!(parse_vip("merp:5000"), Ok((name("merp"), 5000)));
        assert_eq!(
            parse_vip("/api.hello-world:80"),
            Ok((name("/api.hello-world"), 80))
        );
        assert_eq!(parse_vip("missing-port"), Err(LabelError::MissingPort));
        assert_eq!(
            parse_vip("invalid-port::1234"),
            Err(LabelError::InvalidHost("invalid-port:".into()))
        );
        assert!(matches!(parse_vip("a:0"), Err(LabelError::InvalidPort(_))));
        assert!(matches!(
            parse_vip("a:65536"),
            Err(LabelError::InvalidPort(_))
        ));
        assert!(matches!(
            parse_vip("a:+80"),
            Err(LabelError::InvalidPort(_))
        ));
        assert!(matches!(parse_vip("a:"), Err(LabelError::InvalidPort(_))));
        assert!(matches!(parse_vip(":80"), Err(LabelError::InvalidHost(_))));
        assert!(matches!(parse_vip("/:80"), Err(LabelError::InvalidHost(_))));
        assert!(matches!(
            parse_vip("[nope]:80"),
            Err(LabelError::InvalidHost(_))
        ));
        assert!(matches!(parse_vip("a:٣"), Err(LabelError::InvalidPort(_))));
    }

    #[test]
    fn task_labels() {
        assert_eq!(
            parse_task_vip("tcp://1.2.3.4:5000"),
            Ok((Protocol::Tcp, ip("1.2.3.4"), 5000))
        );
        assert_eq!(
            parse_task_vip("udp://def:80"),
            Ok((Protocol::Udp, name("def"), 80))
        );
        assert_eq!(
            parse_task_vip("sctp://def:80"),
            Err(LabelError::UnknownProtocol("sctp".into()))
        );
        assert_eq!(parse_task_vip("def:80"), Err(LabelError::MissingProtocol));
        assert_eq!(vip_port_index("VIP_PORT0"), Some(0));
        assert_eq!(vip_port_index("vip_port12"), Some(12));
        assert_eq!(vip_port_index("VIP_PORT"), None);
        assert_eq!(vip_port_index("VIP_PORTx"), None);
        assert_eq!(vip_port_index("VIP_0"), None);
    }

    #[test]
    fn names() {
        assert_eq!(
            named_vip("/api.hello-world", "marathon").as_deref(),
            Some("api.hello-world.marathon")
        );
        assert_eq!(
            named_vip("My_App", "Marathon-User").as_deref(),
            Some("my-app.marathon-user")
        );
        assert_eq!(named_vip("/a..b/", "fw").as_deref(), Some("a.b.fw"));
        assert_eq!(named_vip("/", "fw"), None);
        assert_eq!(named_vip("web", "%%"), None);
        let long = "x".repeat(100);
        assert_eq!(named_vip(&long, "m").unwrap().len(), 63 + 2);
    }
}
