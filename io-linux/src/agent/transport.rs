//! Peer connections over TCP: one outbound connection per peer this node sends to (opened on
//! demand, written only), and the listener whose inbound connections are read only — one
//! connection per direction, as the simulator models them.
//!
//! Outbound ([`Outbound`], owned by the node's task): a writer task per peer with a bounded
//! queue. It connects from the advertised address (so the receiver sees the address the
//! frames claim) with a short connect timeout, retried while frames wait, up to the user
//! timeout; a refused connect gives up at once. On any failure the queued frames are
//! dropped (counted), the node hears `ConnectionLost`, and the next connect waits a
//! jittered backoff. Dropping a peer's queue (`close`) makes its writer flush what is
//! queued, close the connection and end. A writer idle for `idle_timeout` closes and ends.
//!
//! Inbound ([`accept_loop`]): a listener with a large backlog (the probes of a stalled
//! agent's neighbours wait in it), at most `max_inbound` connections read at once and at
//! most `max_inbound_per_source` from one address (so that one host, even without the
//! key, cannot take every slot from the peers), each read frame by frame (oversized frames end the connection before any allocation) and
//! offered to the node's inbox with the connection's remote address.
//!
//! Invariants:
//! - Every queue is bounded, in frames and in bytes: `queue_frames` and `queue_bytes` per
//!   peer, `max_peers` writers, `max_inbound` readers (`max_inbound_per_source` per
//!   address), and `inbound_bytes` for every frame
//!   read and not yet handled by the node (taken before the frame is allocated); what does
//!   not fit is dropped and counted.
//! - Sockets carry `TCP_NODELAY` and `TCP_USER_TIMEOUT`; writes have a timeout.
//! - Nothing here decodes or trusts a frame: the node authenticates it and checks its
//!   sender against the remote address given here.

use super::budget::{BudgetBySize, ByteBudget, Frame};
use super::frames::{self, Read, ReadError};
use super::inbox::{Inbox, Input};
use crate::metrics::{ShellMetrics, Why};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Timeouts and bounds of the peer transport.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// One connect attempt (the simulator's `connect_retry`).
    pub connect_timeout: Duration,
    /// `TCP_USER_TIMEOUT`, and the longest a frame waits for a connection.
    pub user_timeout: Duration,
    /// One write.
    pub write_timeout: Duration,
    /// A writer with nothing to send for this long closes its connection.
    pub idle_timeout: Duration,
    /// An inbound connection silent for this long is closed.
    pub read_idle_timeout: Duration,
    /// Frames queued per peer.
    pub queue_frames: usize,
    /// Bytes queued per peer (at least one frame of the largest size).
    pub queue_bytes: usize,
    /// Bytes of all large inbound frames (over `small_frame` bytes: records, in practice)
    /// read and not yet handled by the node (at least one frame of the largest size).
    pub inbound_bytes: usize,
    /// Bytes of all small inbound frames (pings, acks, membership, digests) read and not yet
    /// handled: a budget of their own, so that a flood of records never crowds out the
    /// messages that tell a live peer from a dead one.
    pub inbound_small_bytes: usize,
    /// The largest frame counted as small.
    pub small_frame: usize,
    /// Peers with a writer at once.
    pub max_peers: usize,
    /// Inbound connections read at once.
    pub max_inbound: usize,
    /// Inbound connections read at once from one address. A peer holds one (two while it
    /// reconnects); host probes close theirs at once.
    pub max_inbound_per_source: usize,
    /// The listener's accept backlog.
    pub backlog: u32,
    /// Backoff after a failed connection: starts here, doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_millis(250),
            user_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            read_idle_timeout: Duration::from_secs(60),
            queue_frames: 1024,
            queue_bytes: 8 << 20,
            inbound_bytes: 16 << 20,
            inbound_small_bytes: 4 << 20,
            small_frame: 16 << 10,
            max_peers: 1024,
            max_inbound: 1024,
            max_inbound_per_source: 16,
            backlog: 4096,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A writer's queue.
struct Writer {
    tx: mpsc::Sender<Frame>,
    budget: ByteBudget,
    task: tokio::task::JoinHandle<()>,
}

/// The outbound side, owned by the node's task.
pub struct Outbound {
    local_ip: std::net::IpAddr,
    cfg: Arc<TransportConfig>,
    metrics: ShellMetrics,
    inbox: Inbox,
    writers: HashMap<SocketAddr, Writer>,
}

impl Outbound {
    /// Outbound connections leave from `local_ip`, the advertised address.
    pub fn new(
        local_ip: std::net::IpAddr,
        cfg: TransportConfig,
        metrics: ShellMetrics,
        inbox: Inbox,
    ) -> Outbound {
        Outbound {
            local_ip,
            cfg: Arc::new(cfg),
            metrics,
            inbox,
            writers: HashMap::new(),
        }
    }

    /// Queues one sealed frame for `dst`, starting its writer if needed.
    pub fn send(&mut self, dst: SocketAddr, frame: Vec<u8>) {
        if self.writers.get(&dst).is_some_and(|w| w.tx.is_closed()) {
            self.writers.remove(&dst);
        }
        if !self.writers.contains_key(&dst) {
            if self.writers.len() >= self.cfg.max_peers {
                self.writers.retain(|_, w| !w.tx.is_closed());
            }
            if self.writers.len() >= self.cfg.max_peers {
                self.drop_frame("too_many_peers");
                return;
            }
            let (tx, rx) = mpsc::channel(self.cfg.queue_frames);
            let task = tokio::spawn(writer(
                dst,
                self.local_ip,
                rx,
                self.cfg.clone(),
                self.metrics.clone(),
                self.inbox.clone(),
            ));
            let budget = ByteBudget::new(self.cfg.queue_bytes);
            self.writers.insert(dst, Writer { tx, budget, task });
        }
        let writer = &self.writers[&dst];
        let Some(share) = writer.budget.try_take(frame.len()) else {
            self.drop_frame("queue_bytes");
            return;
        };
        if writer.tx.try_send(Frame::new(frame, share)).is_err() {
            self.drop_frame("queue_full");
        }
    }

    /// Flushes what is queued for `dst`, then closes its connection.
    pub fn close(&mut self, dst: SocketAddr) {
        // Dropping the sender: the writer sends what is queued and ends.
        self.writers.remove(&dst);
    }

    /// Closes every connection after flushing it; the writers' tasks, to wait for.
    pub fn close_all(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.writers.drain().map(|(_, w)| w.task).collect()
    }

    fn drop_frame(&self, reason: &'static str) {
        self.metrics
            .send_drops
            .get_or_create(&Why::new(reason))
            .inc();
    }
}

/// Backoff between failed connections: `min × 2^k` capped at `max`, each drawn in
/// `[half, full]` so that peers do not retry in step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            failures: 0,
        }
    }

    /// The ceiling of the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max)
    }

    /// The next wait, jittered, and one more failure counted.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

fn configure(stream: &TcpStream, cfg: &TransportConfig) {
    crate::os::tune_stream(stream, cfg.user_timeout);
}

#[derive(Debug)]
enum ConnectError {
    Refused,
    Timeout,
    Other(std::io::Error),
}

impl ConnectError {
    fn reason(&self) -> &'static str {
        match self {
            ConnectError::Refused => "refused",
            ConnectError::Timeout => "timeout",
            ConnectError::Other(_) => "error",
        }
    }
}

async fn connect(
    dst: SocketAddr,
    local_ip: std::net::IpAddr,
    cfg: &TransportConfig,
) -> Result<TcpStream, ConnectError> {
    let connect = crate::os::tcp_connect_from(dst, local_ip, cfg.user_timeout);
    match timeout(cfg.connect_timeout, connect).await {
        Ok(Ok(stream)) => {
            configure(&stream, cfg);
            Ok(stream)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ConnectError::Refused)
        }
        Ok(Err(e)) => Err(ConnectError::Other(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Connects, retrying every connect timeout while frames wait, until `user_timeout`
/// after `since`. A refused connection gives up at once.
async fn connect_with_retries(
    dst: SocketAddr,
    local_ip: std::net::IpAddr,
    cfg: &TransportConfig,
    metrics: &ShellMetrics,
    since: Instant,
) -> Option<TcpStream> {
    loop {
        let attempt = connect(dst, local_ip, cfg).await;
        let reason = match &attempt {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        metrics.connects.get_or_create(&Why::new(reason)).inc();
        match attempt {
            Ok(stream) => return Some(stream),
            Err(ConnectError::Refused) => return None,
            Err(e) => {
                if since.elapsed() >= cfg.user_timeout {
                    tracing::debug!(%dst, error = ?e, "giving up connecting");
                    return None;
                }
                if let ConnectError::Other(error) = &e {
                    // Unreachable networks fail at once: do not spin.
                    tracing::debug!(%dst, %error, "connect failed");
                    sleep(cfg.connect_timeout).await;
                }
            }
        }
    }
}

/// The writer of one peer; see the module doc.
async fn writer(
    dst: SocketAddr,
    local_ip: std::net::IpAddr,
    mut rx: mpsc::Receiver<Frame>,
    cfg: Arc<TransportConfig>,
    metrics: ShellMetrics,
    inbox: Inbox,
) {
    let mut backoff = Backoff::new(cfg.min_backoff, cfg.max_backoff);
    let mut batch: Vec<u8> = Vec::new();
    loop {
        let first = match timeout(cfg.idle_timeout, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        let Some(mut stream) =
            connect_with_retries(dst, local_ip, &cfg, &metrics, Instant::now()).await
        else {
            let mut dropped = 1u64;
            while rx.try_recv().is_ok() {
                dropped += 1;
            }
            metrics
                .send_drops
                .get_or_create(&Why::new("connect_failed"))
                .inc_by(dropped);
            inbox.notice(Input::ConnectionLost(dst)).await;
            let wait = backoff.next_wait();
            tokio::select! {
                _ = sleep(wait) => {}
                _ = rx_closed(&rx) => return,
            }
            continue;
        };
        backoff.reset();
        metrics.open_connections.inc();
        let mut next = Some(first);
        let ended_by_close = loop {
            // Everything ready goes out in one write. A batch grown by a large frame does not
            // keep its capacity: a writer idles with at most 256 KiB.
            batch.clear();
            batch.shrink_to(256 * 1024);
            let mut frames = 0u64;
            while let Some(frame) = next.take().or_else(|| rx.try_recv().ok()) {
                batch.extend_from_slice(&frames::prefix(frame.len()));
                batch.extend_from_slice(&frame);
                frames += 1;
                if batch.len() >= 256 * 1024 {
                    break;
                }
            }
            if !batch.is_empty() {
                // The flush is a no-op on a kernel socket; madsim's streams send on it.
                let write = async {
                    stream.write_all(&batch).await?;
                    stream.flush().await
                };
                match timeout(cfg.write_timeout, write).await {
                    Ok(Ok(())) => {
                        metrics.frames_sent.inc_by(frames);
                        metrics.bytes_sent.inc_by(batch.len() as u64);
                    }
                    _ => {
                        metrics
                            .send_drops
                            .get_or_create(&Why::new("write_failed"))
                            .inc_by(frames);
                        break false;
                    }
                }
            }
            match timeout(cfg.idle_timeout, rx.recv()).await {
                Ok(Some(frame)) => next = Some(frame),
                Ok(None) => break true,
                Err(_) => break true,
            }
        };
        metrics.open_connections.dec();
        if ended_by_close {
            let _ = timeout(cfg.write_timeout, stream.shutdown()).await;
            return;
        }
        drop(stream);
        inbox.notice(Input::ConnectionLost(dst)).await;
    }
}

/// Resolves once the node dropped this writer's queue (`close`): nothing more will come.
async fn rx_closed(rx: &mpsc::Receiver<Frame>) {
    while !rx.is_closed() {
        sleep(Duration::from_millis(50)).await;
    }
}

/// Binds the peer listener with the configured backlog.
pub async fn bind(addr: SocketAddr, cfg: &TransportConfig) -> std::io::Result<TcpListener> {
    crate::os::tcp_listener(addr, cfg.backlog).await
}

/// Accepts peer connections until `shutdown`, reading each in its own task.
pub async fn accept_loop(
    listener: TcpListener,
    cfg: TransportConfig,
    metrics: ShellMetrics,
    inbox: Inbox,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_inbound));
    let per_source = Arc::new(PerSource::default());
    let budget = BudgetBySize {
        large: ByteBudget::new(cfg.inbound_bytes),
        small: ByteBudget::new(cfg.inbound_small_bytes),
        small_frame: cfg.small_frame,
    };
    let next_conn = AtomicU64::new(1);
    let cfg = Arc::new(cfg);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                metrics.accepts.get_or_create(&Why::new("error")).inc();
                tracing::debug!(error = %e, "accept failed");
                // EMFILE and the like: let the condition pass.
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(source) = per_source.take(remote.ip().to_canonical(), cfg.max_inbound_per_source)
        else {
            metrics
                .accepts
                .get_or_create(&Why::new("over_source_limit"))
                .inc();
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.accepts.get_or_create(&Why::new("over_limit")).inc();
            continue;
        };
        metrics.accepts.get_or_create(&Why::new("ok")).inc();
        configure(&stream, &cfg);
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let (cfg, metrics, inbox, shutdown, budget) = (
            cfg.clone(),
            metrics.clone(),
            inbox.clone(),
            shutdown.clone(),
            budget.clone(),
        );
        tokio::spawn(async move {
            metrics.open_connections.inc();
            let mut stream = stream;
            let max = frames::max_frame();
            let remote_ip = remote.ip().to_canonical();
            loop {
                let read = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = timeout(cfg.read_idle_timeout, frames::read_frame(&mut stream, max, &budget)) => read,
                };
                match read {
                    Ok(Ok(Read::Frame(frame))) => {
                        metrics.frames_received.inc();
                        metrics.bytes_received.inc_by(frame.len() as u64 + 4);
                        inbox.frame(conn, remote_ip, frame);
                    }
                    Ok(Ok(Read::Skipped { len })) => {
                        metrics.frames_received.inc();
                        metrics.bytes_received.inc_by(len as u64 + 4);
                        metrics
                            .receive_drops
                            .get_or_create(&Why::new("inbound_bytes"))
                            .inc();
                    }
                    Ok(Err(ReadError::Oversized { len, max })) => {
                        metrics
                            .receive_drops
                            .get_or_create(&Why::new("oversized"))
                            .inc();
                        tracing::warn!(%remote, len, max, "peer announced an oversized frame; closing its connection");
                        break;
                    }
                    Ok(Err(ReadError::Empty)) => {
                        metrics
                            .receive_drops
                            .get_or_create(&Why::new("empty"))
                            .inc();
                        break;
                    }
                    Ok(Err(ReadError::Truncated)) => {
                        metrics
                            .receive_drops
                            .get_or_create(&Why::new("truncated"))
                            .inc();
                        break;
                    }
                    Ok(Err(_)) => break,
                    Err(_) => {
                        metrics.receive_drops.get_or_create(&Why::new("idle")).inc();
                        break;
                    }
                }
            }
            metrics.open_connections.dec();
            drop((permit, source));
            inbox.notice(Input::InboundClosed { conn }).await;
        });
    }
}

/// Inbound connections read per remote address. Holds only addresses with a connection
/// open, so at most `max_inbound` entries.
#[derive(Default)]
struct PerSource {
    open: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One inbound connection counted against its address until dropped.
struct SourceSlot {
    of: Arc<PerSource>,
    ip: std::net::IpAddr,
}

impl PerSource {
    /// A slot for one more connection from `ip`, unless it has `max` open.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<SourceSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(&ip).copied().unwrap_or(0) >= max {
            return None;
        }
        *open.entry(ip).or_insert(0) += 1;
        Some(SourceSlot {
            of: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_source_are_bounded_and_given_back() {
        let per = Arc::new(PerSource::default());
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first: Vec<_> = (0..3).map(|_| per.take(a, 3).expect("room")).collect();
        assert!(per.take(a, 3).is_none(), "a fourth from the same address");
        let other = per.take(b, 3).expect("another address has its own");
        drop(first);
        assert!(per.take(a, 3).is_some(), "given back when they close");
        drop(other);
        assert!(
            per.open.lock().unwrap().is_empty(),
            "no entry for closed sources"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            let ceiling = b.ceiling();
            let wait = b.next_wait();
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} vs {ceiling:?}"
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}

#[cfg(test)]
mod io_tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn small() -> TransportConfig {
        TransportConfig {
            queue_frames: 4,
            min_backoff: Duration::from_millis(10),
            ..TransportConfig::default()
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Input>) -> Input {
        timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an input in time")
            .expect("open")
    }

    /// Frames travel from 127.0.0.2 (the advertised address) to a listener on 127.0.0.1,
    /// in order, and the receiver sees the advertised address as their remote.
    #[tokio::test]
    async fn frames_arrive_in_order_from_the_advertised_address() {
        let metrics = ShellMetrics::default();
        let listener = bind("127.0.0.1:0".parse().unwrap(), &small())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (inbox, mut rx) = Inbox::new(64, metrics.clone());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            small(),
            metrics.clone(),
            inbox.clone(),
            stop.clone(),
        ));
        let mut out = Outbound::new(
            "127.0.0.2".parse().unwrap(),
            small(),
            metrics.clone(),
            inbox,
        );
        for i in 0..3u8 {
            out.send(addr, vec![i; 10]);
        }
        for i in 0..3u8 {
            match next(&mut rx).await {
                Input::Frame { remote, bytes, .. } => {
                    assert_eq!(remote, "127.0.0.2".parse::<std::net::IpAddr>().unwrap());
                    assert_eq!(&bytes[..], &[i; 10]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Closing flushes and closes: the receiver sees its inbound connection end.
        out.close(addr);
        assert!(matches!(next(&mut rx).await, Input::InboundClosed { .. }));
        stop.cancel();
    }

    #[tokio::test]
    async fn an_oversized_frame_ends_the_connection_unread() {
        let metrics = ShellMetrics::default();
        let listener = bind("127.0.0.1:0".parse().unwrap(), &small())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (inbox, mut rx) = Inbox::new(64, metrics.clone());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            small(),
            metrics.clone(),
            inbox,
            stop.clone(),
        ));
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&frames::prefix(frames::max_frame() + 1))
            .await
            .unwrap();
        assert!(matches!(next(&mut rx).await, Input::InboundClosed { .. }));
        assert_eq!(
            metrics
                .receive_drops
                .get_or_create(&Why::new("oversized"))
                .get(),
            1
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_and_its_frames_counted() {
        let metrics = ShellMetrics::default();
        // A port nobody listens on: bind, note it, close.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (inbox, mut rx) = Inbox::new(64, metrics.clone());
        let mut out = Outbound::new(
            "127.0.0.1".parse().unwrap(),
            small(),
            metrics.clone(),
            inbox,
        );
        out.send(closed, vec![1; 4]);
        match next(&mut rx).await {
            Input::ConnectionLost(peer) => assert_eq!(peer, closed),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            metrics.connects.get_or_create(&Why::new("refused")).get(),
            1
        );
        assert_eq!(
            metrics
                .send_drops
                .get_or_create(&Why::new("connect_failed"))
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let metrics = ShellMetrics::default();
        let (inbox, _rx) = Inbox::new(64, metrics.clone());
        // A blackhole-ish peer: the writer is busy connecting while frames pile up.
        let mut out = Outbound::new(
            "127.0.0.1".parse().unwrap(),
            small(),
            metrics.clone(),
            inbox,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..20 {
            out.send(addr, vec![0; 8]);
        }
        // The writer takes one frame, the queue holds four: the rest are dropped.
        let dropped = metrics
            .send_drops
            .get_or_create(&Why::new("queue_full"))
            .get();
        assert!(dropped >= 20 - 1 - 4, "dropped {dropped}");
        drop(listener);
    }

    /// A peer's queue is bounded in bytes too: large frames are dropped once the queued
    /// bytes reach `queue_bytes`, however few they are.
    #[tokio::test]
    async fn a_queue_over_its_bytes_drops_and_counts() {
        let metrics = ShellMetrics::default();
        let (inbox, _rx) = Inbox::new(64, metrics.clone());
        let cfg = TransportConfig {
            queue_frames: 1024,
            queue_bytes: 100,
            ..small()
        };
        let mut out = Outbound::new("127.0.0.1".parse().unwrap(), cfg, metrics.clone(), inbox);
        // A listener that never accepts: frames wait in the queue.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..5 {
            out.send(addr, vec![0; 40]);
        }
        // Two frames (80 bytes) fit; the writer may have taken one more out of the queue
        // but it still holds its share until written.
        let dropped = metrics
            .send_drops
            .get_or_create(&Why::new("queue_bytes"))
            .get();
        assert_eq!(dropped, 3);
        drop(listener);
    }
}
