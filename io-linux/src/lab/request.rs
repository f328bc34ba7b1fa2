//! The lab's client: one HTTP GET on a new connection, or one UDP question, with a
//! deadline; run inside a namespace with [`super::net::in_netns`]. And [`Tally`], who
//! answered how often.
//!
//! Invariants:
//! - Every request is a new connection (HTTP: `Connection: close`, read to the end), so
//!   the kernel balances each one afresh.
//! - A request never takes longer than its timeout (plus scheduling): connect, write and
//!   every read share one deadline.
//! - Targets are IP literals; nothing is resolved.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Largest HTTP answer read.
const MAX_ANSWER: usize = 16 << 20;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `http://IP[:PORT]/PATH` (port 80 by default; IPv6 in brackets).
    Http { addr: SocketAddr, path: String },
    /// `udp://IP:PORT`.
    Udp(SocketAddr),
}

impl Target {
    /// Parses `http://10.200.0.1/`, `http://[fd78::1]:80/x`, `udp://10.200.0.2:53`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("{text:?}: {why}");
        if let Some(rest) = text.strip_prefix("udp://") {
            let addr: SocketAddr = rest
                .trim_end_matches('/')
                .parse()
                .map_err(|_| bad("expected udp://IP:PORT"))?;
            return Ok(Target::Udp(addr));
        }
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://… or udp://…"))?;
        let (authority, path) = match rest.find('/') {
            Some(k) => (&rest[..k], &rest[k..]),
            None => (rest, "/"),
        };
        let addr = if let Ok(addr) = authority.parse::<SocketAddr>() {
            addr
        } else {
            let host = authority
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(authority);
            let ip: IpAddr = host
                .parse()
                .map_err(|_| bad("the host must be an IP address"))?;
            SocketAddr::new(ip, 80)
        };
        Ok(Target::Http {
            addr,
            path: path.to_owned(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Http { addr, path } if addr.port() == 80 => match addr.ip() {
                IpAddr::V4(ip) => write!(f, "http://{ip}{path}"),
                IpAddr::V6(ip) => write!(f, "http://[{ip}]{path}"),
            },
            Target::Http { addr, path } => write!(f, "http://{addr}{path}"),
            Target::Udp(addr) => write!(f, "udp://{addr}"),
        }
    }
}

/// One request to `target`: the answer's body (trimmed), or why there is none.
pub fn ask(target: &Target, timeout: Duration) -> Result<String, String> {
    match target {
        Target::Http { addr, path } => http_get(*addr, path, timeout),
        Target::Udp(addr) => udp_ask(*addr, timeout),
    }
}

fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer from {addr} within {timeout:?}"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(remaining()?)).ok();
    let host = match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: minuteman-lab\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(remaining()?)).ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER {
                    return Err(format!("{addr} answered more than {MAX_ANSWER} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer from {addr} within {timeout:?}"))
            }
            Err(e) => return Err(format!("reading from {addr}: {e}")),
        }
    }
    parse_response(&answer).map_err(|e| format!("{addr}: {e}"))
}

/// The body of a complete HTTP/1 response if its status is 200.
fn parse_response(answer: &[u8]) -> Result<String, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the connection closed before a complete answer")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut body = answer[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        body = dechunk(&body)?;
    }
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    if code == 200 {
        Ok(body)
    } else {
        Err(format!("HTTP {code}: {body}"))
    }
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a truncated chunk")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size {size_text:?}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("a truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn udp_ask(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(addr)
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    socket.set_read_timeout(Some(timeout)).ok();
    socket
        .send(b"who")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("no answer from {addr} within {timeout:?}"))
        }
        Err(e) => Err(format!("no answer from {addr}: {e}")),
    }
}

/// Who answered how many requests, and the failures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    answers: BTreeMap<String, usize>,
    failed: usize,
    first_error: Option<String>,
}

impl Tally {
    pub fn add(&mut self, result: &Result<String, String>) {
        match result {
            Ok(name) => *self.answers.entry(name.clone()).or_default() += 1,
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }

    /// Requests counted.
    pub fn total(&self) -> usize {
        self.answers.values().sum::<usize>() + self.failed
    }

    /// How often `name` answered.
    pub fn count(&self, name: &str) -> usize {
        self.answers.get(name).copied().unwrap_or(0)
    }

    /// Who answered, in natural order (`h2` before `h10`).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.answers.keys().map(String::as_str).collect();
        names.sort_by_key(|n| (n.len(), *n));
        names
    }

    pub fn failed(&self) -> usize {
        self.failed
    }

    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }
}

impl std::fmt::Display for Tally {
    /// `h1 ×10, h2 ×11, h3 ×9`, then `failed ×2` if any failed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .names()
            .into_iter()
            .map(|n| format!("{n} ×{}", self.count(n)))
            .collect();
        if self.failed > 0 {
            parts.push(format!("failed ×{}", self.failed));
        }
        if parts.is_empty() {
            return f.write_str("no requests");
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for (text, shown) in [
            ("http://10.200.0.1/", "http://10.200.0.1/"),
            ("http://10.200.0.1", "http://10.200.0.1/"),
            ("http://10.77.0.1:8080/x?y", "http://10.77.0.1:8080/x?y"),
            ("http://[fd78::1]/", "http://[fd78::1]/"),
            ("http://[fd78::1]:8080/", "http://[fd78::1]:8080/"),
            ("udp://10.200.0.2:53", "udp://10.200.0.2:53"),
            ("udp://[fd78::2]:53", "udp://[fd78::2]:53"),
        ] {
            assert_eq!(Target::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "ftp://x/",
            "http://name.example/",
            "udp://10.0.0.1",
            "10.0.0.1:80",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_read_plain_or_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nh1\n";
        assert_eq!(parse_response(plain).as_deref(), Ok("h1"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[1\r\n3\r\n,2]\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).as_deref(), Ok("[1,2]"));
        let busy = b"HTTP/1.1 503 Service Unavailable\r\n\r\nthe node is busy\n";
        assert_eq!(
            parse_response(busy),
            Err("HTTP 503: the node is busy".into())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn a_tally_counts_in_natural_order() {
        let mut t = Tally::default();
        for r in ["h10", "h2", "h2", "h1"] {
            t.add(&Ok(r.into()));
        }
        t.add(&Err("timed out".into()));
        assert_eq!(t.to_string(), "h1 ×1, h2 ×2, h10 ×1, failed ×1");
        assert_eq!((t.total(), t.failed(), t.count("h2")), (5, 1, 2));
        assert_eq!(t.first_error(), Some("timed out"));
        assert_eq!(Tally::default().to_string(), "no requests");
    }
}
