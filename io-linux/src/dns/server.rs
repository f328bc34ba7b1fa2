//! The DNS listeners: UDP and TCP on every `--dns-listen` address, answering from the
//! current [`DnsTable`] (module `answer`), relaying names outside the zone to the
//! upstream when one is set, and keeping that table current from the names and task
//! records the node publishes and the state the kernel committed.
//!
//! Invariants:
//! - Every query is counted once by its outcome (`dns_queries_total{reason}`), every relay
//!   by its result (`dns_forwards_total{reason}`: `ok`, `timeout`, `error`, `overload`).
//! - Bounded: at most [`MAX_FORWARDS`] relays in flight (beyond: SERVFAIL, counted
//!   `overload`), at most [`MAX_TCP_CONNECTIONS`] TCP connections (beyond: closed at once,
//!   counted `tcp_refused`), each closed after [`TCP_IDLE`] without a complete query; a
//!   query is read into one fixed buffer per listener task.
//! - A failed send or a broken connection is counted and the listener goes on; only the
//!   stop token ends it.
//! - The table a query reads is swapped whole ([`ArcSwap`]): no lock on the query path.

use super::answer::{answer, Outcome, Transport, MAX_QUERY};
use super::table::{DnsTable, TaskZone};
use crate::metrics::{ShellMetrics, Why};
use arc_swap::ArcSwap;
use minuteman_core::dns::hickory::op::{Message, OpCode, ResponseCode};
use minuteman_core::kernel::KernelState;
use minuteman_core::tasks::{TaskEndpoint, TaskName};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Relays in flight at most.
pub const MAX_FORWARDS: usize = 256;
/// How long a relay waits for the upstream.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP connections at most.
pub const MAX_TCP_CONNECTIONS: usize = 128;
/// A TCP connection without a complete query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Tasks reading each UDP socket (the runtime spreads them over its threads).
const UDP_READERS: usize = 2;

/// The named VIPs as the node assigns them: (name under the zone, IPv4, IPv6).
pub type NameList = Vec<(String, Option<Ipv4Addr>, Option<Ipv6Addr>)>;

/// The cluster's running tasks by name, as the node merges them (for DNS).
pub type TaskList = BTreeMap<TaskName, Vec<TaskEndpoint>>;

/// The current table, shared by the listeners and the API.
pub type SharedTable = Arc<ArcSwap<DnsTable>>;

/// What the table is built from.
pub struct TableSources {
    /// The zone of named VIPs.
    pub zone: String,
    /// The zone of task records; `None`: tasks are not served.
    pub tasks_zone: Option<String>,
    pub names: watch::Receiver<Arc<NameList>>,
    pub tasks: watch::Receiver<Arc<TaskList>>,
    pub committed: watch::Receiver<Arc<KernelState>>,
}

/// Keeps `table` equal to the names of `names` that `committed` holds, and the task
/// records of `tasks`, until `stop`.
pub async fn maintain_table(table: SharedTable, mut from: TableSources, stop: CancellationToken) {
    let mut serial: u32 = 0;
    // The task zone, rebuilt only when the task records change (not on kernel commits).
    let mut task_zone: Option<(Arc<TaskList>, Arc<TaskZone>)> = None;
    loop {
        serial = serial.wrapping_add(1);
        let list = from.names.borrow_and_update().clone();
        let tasks = from.tasks.borrow_and_update().clone();
        let kernel = from.committed.borrow_and_update().clone();
        let mut built = DnsTable::build(
            &from.zone,
            list.iter().map(|(n, v4, v6)| (n.as_str(), *v4, *v6)),
            &kernel,
            serial,
        );
        if let Some(zone) = &from.tasks_zone {
            let current = match &task_zone {
                Some((of, built)) if Arc::ptr_eq(of, &tasks) => built.clone(),
                _ => {
                    let fresh = Arc::new(TaskZone::build(zone, &tasks));
                    task_zone = Some((tasks, fresh.clone()));
                    fresh
                }
            };
            built = built.with_task_zone(current);
        }
        table.store(Arc::new(built));
        tokio::select! {
            () = stop.cancelled() => return,
            r = from.names.changed() => if r.is_err() { return },
            r = from.tasks.changed() => if r.is_err() { return },
            r = from.committed.changed() => if r.is_err() { return },
        }
    }
}

/// The relay to the upstream server.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    slots: Arc<Semaphore>,
}

/// What a listener needs.
#[derive(Clone)]
struct Ctx {
    table: SharedTable,
    upstream: Option<Upstream>,
    metrics: ShellMetrics,
}

impl Ctx {
    fn count(&self, label: &'static str) {
        self.metrics
            .dns_queries
            .get_or_create(&Why::new(label))
            .inc();
    }

    fn count_forward(&self, label: &'static str) {
        self.metrics
            .dns_forwards
            .get_or_create(&Why::new(label))
            .inc();
    }

    /// The relayed answer to `query`, or SERVFAIL (counted either way).
    async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        let upstream = self.upstream.as_ref()?;
        let Ok(_slot) = upstream.slots.clone().try_acquire_owned() else {
            self.count_forward("overload");
            return servfail(query);
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, relay(upstream.addr, query)).await {
            Ok(Ok(reply)) => {
                self.count_forward("ok");
                Some(reply)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, upstream = %upstream.addr, "DNS relay failed");
                self.count_forward("error");
                servfail(query)
            }
            Err(_) => {
                self.count_forward("timeout");
                servfail(query)
            }
        }
    }
}

/// One query to `upstream` over UDP from a fresh port; the reply with the query's id.
async fn relay(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A reply to another query (or garbage) is not ours: keep waiting.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// SERVFAIL for `query` (when its header can be read).
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::ServFail)
        .to_vec()
        .ok()
}

/// The sockets of every `--dns-listen` address, bound (so a start that cannot listen
/// fails with the address named).
pub struct Bound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for DNS on {addr} ({proto}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub proto: &'static str,
    pub source: std::io::Error,
}

/// The receive buffer asked for each UDP socket: room for a burst of about 8,000 queries
/// while the readers are busy (beyond `net.core.rmem_max` only with CAP_NET_ADMIN).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Binds UDP and TCP on each address.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Bound, BindError> {
    let mut bound = Bound {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for &addr in addrs {
        let udp = crate::os::udp_socket(addr, UDP_RECV_BUFFER)
            .await
            .map_err(|source| BindError {
                addr,
                proto: "udp",
                source,
            })?;
        // The TCP listener on the port UDP got (which matters with port 0).
        let port_addr = udp.local_addr().unwrap_or(addr);
        let tcp = TcpListener::bind(port_addr)
            .await
            .map_err(|source| BindError {
                addr,
                proto: "tcp",
                source,
            })?;
        bound.udp.push(Arc::new(udp));
        bound.tcp.push(tcp);
    }
    Ok(bound)
}

impl Bound {
    /// The UDP addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Serves until `stop`; returns the listener tasks.
    pub fn spawn(
        self,
        table: SharedTable,
        upstream: Option<SocketAddr>,
        metrics: ShellMetrics,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let ctx = Ctx {
            table,
            upstream: upstream.map(|addr| Upstream {
                addr,
                slots: Arc::new(Semaphore::new(MAX_FORWARDS)),
            }),
            metrics,
        };
        let mut tasks = Vec::new();
        for socket in self.udp {
            for _ in 0..UDP_READERS {
                tasks.push(tokio::spawn(serve_udp(
                    socket.clone(),
                    ctx.clone(),
                    stop.clone(),
                )));
            }
        }
        let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        for listener in self.tcp {
            tasks.push(tokio::spawn(serve_tcp(
                listener,
                ctx.clone(),
                connections.clone(),
                stop.clone(),
            )));
        }
        tasks
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, ctx: Ctx, stop: CancellationToken) {
    // Larger than any query we answer, so an oversized one is seen whole and counted.
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        let (n, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(%error, "DNS UDP receive failed");
                    ctx.count("receive_error");
                    continue;
                }
            },
        };
        let query = &buf[..n];
        let outcome = answer(
            query,
            &ctx.table.load(),
            Transport::Udp,
            ctx.upstream.is_some(),
        );
        ctx.count(outcome.label());
        let reply = match outcome {
            Outcome::Reply { bytes, .. } => bytes,
            Outcome::Drop { .. } => continue,
            Outcome::Forward => {
                let ctx = ctx.clone();
                let socket = socket.clone();
                let query = query.to_vec();
                tokio::spawn(async move {
                    if let Some(reply) = ctx.forward(&query).await {
                        if crate::os::send_to(&socket, &reply, peer).await.is_err() {
                            ctx.count("send_error");
                        }
                    }
                });
                continue;
            }
        };
        if crate::os::send_to(&socket, &reply, peer).await.is_err() {
            ctx.count("send_error");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    ctx: Ctx,
    connections: Arc<Semaphore>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "DNS TCP accept failed");
                    ctx.count("accept_error");
                    // A full descriptor table: let it drain rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            ctx.count("tcp_refused");
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve_connection(stream, &ctx) => {}
            }
        });
    }
}

/// Queries on one TCP connection (two-byte length prefix each) until it closes, idles or
/// sends something unanswerable.
async fn serve_connection(mut stream: TcpStream, ctx: &Ctx) {
    let mut buf = vec![0u8; MAX_QUERY];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_QUERY {
            ctx.count("dropped_oversized");
            return;
        }
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            _ => {
                ctx.count("dropped_short");
                return;
            }
        }
        let query = &buf[..len];
        let outcome = answer(
            query,
            &ctx.table.load(),
            Transport::Tcp,
            ctx.upstream.is_some(),
        );
        ctx.count(outcome.label());
        let reply = match outcome {
            Outcome::Reply { bytes, .. } => bytes,
            Outcome::Drop { .. } => return,
            Outcome::Forward => match ctx.forward(query).await {
                Some(reply) => reply,
                None => return,
            },
        };
        let Ok(prefix) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&prefix.to_be_bytes());
        out.extend_from_slice(&reply);
        // The flush is a no-op on a kernel socket; madsim's streams send on it.
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            ctx.count("send_error");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::dns::hickory::op::{MessageType, Query};
    use minuteman_core::dns::hickory::rr::rdata::A;
    use minuteman_core::dns::hickory::rr::{Name, RData, Record, RecordType};
    use minuteman_core::dns::table::DEFAULT_ZONE;

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// An upstream answering every query with 192.0.2.7.
    async fn fake_upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.add_query(q.queries[0].clone());
                r.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A(A([192, 0, 2, 7].into())),
                ));
                let _ = socket.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    async fn server(upstream: Option<SocketAddr>) -> (SocketAddr, ShellMetrics, CancellationToken) {
        let bound = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
        let addr = bound.local_addrs()[0];
        let metrics = ShellMetrics::default();
        let stop = CancellationToken::new();
        let table: SharedTable = Arc::new(ArcSwap::from_pointee(DnsTable::empty(DEFAULT_ZONE)));
        bound.spawn(table, upstream, metrics.clone(), stop.clone());
        (addr, metrics, stop)
    }

    async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(q, server).await.unwrap();
        let mut buf = [0u8; 1500];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn count(
        family: &prometheus_client::metrics::family::Family<
            Why,
            prometheus_client::metrics::counter::Counter,
        >,
        label: &'static str,
    ) -> u64 {
        family.get_or_create(&Why::new(label)).get()
    }

    #[tokio::test]
    async fn names_outside_the_zone_are_relayed_and_a_silent_upstream_gets_servfail() {
        let upstream = fake_upstream().await;
        let (addr, metrics, stop) = server(Some(upstream)).await;
        let reply = ask_udp(addr, &query(0x4242, "example.com.")).await;
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.answers[0].data, RData::A(A([192, 0, 2, 7].into())));
        assert_eq!(count(&metrics.dns_forwards, "ok"), 1);
        assert_eq!(count(&metrics.dns_queries, "forward"), 1);
        stop.cancel();

        // An upstream that never answers: SERVFAIL after the relay's timeout, counted.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (addr, metrics, stop) = server(Some(silent.local_addr().unwrap())).await;
        let reply = ask_udp(addr, &query(7, "example.org.")).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(count(&metrics.dns_forwards, "timeout"), 1);
        stop.cancel();
    }

    #[tokio::test]
    async fn tcp_queries_are_answered_and_refused_without_an_upstream() {
        let (addr, metrics, stop) = server(None).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for (id, name, code) in [
            (1, "nope.l4lb.thisdcos.directory.", ResponseCode::NXDomain),
            (2, "example.com.", ResponseCode::Refused),
        ] {
            let q = query(id, name);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend(q);
            stream.write_all(&framed).await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut body).await.unwrap();
            let reply = Message::from_vec(&body).unwrap();
            assert_eq!(
                (reply.metadata.id, reply.metadata.response_code),
                (id, code)
            );
        }
        assert_eq!(count(&metrics.dns_queries, "nxdomain"), 1);
        assert_eq!(count(&metrics.dns_queries, "refused"), 1);
        // An oversized length prefix closes the connection, counted.
        stream.write_all(&[0xff, 0xff]).await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        assert_eq!(count(&metrics.dns_queries, "dropped_oversized"), 1);
        stop.cancel();
    }
}
