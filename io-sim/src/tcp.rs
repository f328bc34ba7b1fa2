//! TCP between the cores: one connection per direction `(from, to)`, in order, lost
//! segments retransmitted on a Linux-like timer.
//!
//! Model (one message = one segment; messages are far below an MSS except large records,
//! and a message is what the core hands over as a unit):
//! - a connection opens on the first message: a SYN (sequence 0) goes out, and data
//!   waits until it arrives; the sender learns of it one more one-way delay later (the
//!   SYN-ACK takes the SYN's delay back; a lost SYN-ACK is not modelled) and sends the
//!   waiting data then;
//! - every segment is lost or delayed like a packet ([`Network::packet`]); a segment that
//!   was lost, partitioned, or arrived at a frozen host (not ACKed) or into a full receive
//!   buffer (zero window) is retransmitted by the sender's timer: `rto × 2^k` after its
//!   k-th transmission (k = 0, 1, ...), capped at `rto_max`. A SYN uses `connect_retry`
//!   (250 ms: the shell's connect timeout, after which it connects again; Linux alone
//!   would wait for its 1 s `TCP_TIMEOUT_INIT`) as its base, data the RTO from the RTT
//!   samples;
//! - the RTO follows Linux: `srtt + max(4·rttvar, rto_min)` (Linux keeps its `rttvar` at
//!   least `tcp_rto_min`, 200 ms), from samples taken on segments transmitted once
//!   (Karn); the sample is the segment's one-way delay doubled (the ACK is not drawn);
//!   before the first sample the RTO is `rto_initial`;
//! - the receiver delivers in sequence order: a segment that arrives after a gap waits
//!   (SACK keeps it: only the missing one is retransmitted) and everything behind a lost
//!   segment is held until that one is retransmitted and arrives (head-of-line blocking).
//!   Duplicates cannot arise (a segment is retransmitted only if it was not accepted);
//! - `user_timeout` (Linux `TCP_USER_TIMEOUT`, 5 s): a segment still not accepted that
//!   long after its first transmission aborts the connection (the retransmission timer
//!   is clamped to fire then, as Linux does). Everything queued on it, in flight or
//!   waiting, is discarded, the receiver forgets its half, and the next message opens a
//!   new connection with a new SYN;
//! - a crashed receiver accepts nothing: segments vanish and the sender retransmits until
//!   the user timeout. A crashed sender retransmits nothing more (segments already on the
//!   wire still arrive). A restarted host starts afresh: every connection from and to it
//!   is reset (the new kernel answers the old connections with RST). A host whose agent
//!   has not started yet answers with a reset: the connection and what it queued are
//!   dropped at once;
//! - a frozen sender's retransmission timers fire when it thaws.
//!
//! Not modelled: fast retransmit, tail loss probes and RACK (a loss is always repaired by
//! the RTO; Linux would repair it once a later segment is acknowledged, or by a loss probe
//! after `2·srtt + 200 ms` for a lone segment: pessimistic by up to about 2× for the
//! cores' traffic, which has a segment on every link at least every 100 ms), congestion
//! and flow control beyond the buffer bounds below, the loss of ACKs, Nagle, delayed ACKs.
//!
//! Bounds: per connection at most `sndbuf` bytes are unaccepted (a message that does not
//! fit is refused and counted: what a non-blocking write into a full send buffer does),
//! which bounds the segments in flight, waiting and held out of order; the receiver's
//! socket holds at most `rcvbuf` bytes unread (beyond, segments are not ACKed, as with a
//! closed window). Each sender keeps its links in a small table sorted by receiver
//! (`Links`: a lookup is a binary search over a few dozen contiguous indices, where an
//! ordered map touched a large node per level), so iteration is deterministic.
//!
//! Invariants: per connection, payloads reach the receiver in the order they were sent,
//! each at most once; the connection's generation tags every segment, and a segment of
//! an older generation is discarded wherever it turns up.

use crate::network::{Drop, Network};
use minuteman_core::Time;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The TCP parameters (Linux defaults unless said otherwise).
#[derive(Clone, Debug, PartialEq)]
pub struct TcpConfig {
    /// `TCP_RTO_MIN`: 200 ms.
    pub rto_min: Duration,
    /// `TCP_RTO_MAX`: 120 s.
    pub rto_max: Duration,
    /// The RTO of data before the first RTT sample: 1 s.
    pub rto_initial: Duration,
    /// How long the shell waits for a connection to open before it gives up on that
    /// attempt and connects again (doubling): 250 ms. Linux alone would resend a lost SYN
    /// only after 1 s (`TCP_TIMEOUT_INIT`); the agent sets a connect timeout instead, and
    /// the simulator models that shell behaviour (a requirement on the agent).
    pub connect_retry: Duration,
    /// `TCP_USER_TIMEOUT` the shell sets: 5 s (our choice; Linux's default is about
    /// 15 minutes of retransmissions).
    pub user_timeout: Duration,
    /// Bytes a connection holds unaccepted (`net.ipv4.tcp_wmem` max: 4 MiB).
    pub sndbuf: usize,
    /// Bytes a receiving socket holds unread (`net.ipv4.tcp_rmem` max: 6 MiB).
    pub rcvbuf: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            rto_initial: Duration::from_secs(1),
            connect_retry: Duration::from_millis(250),
            user_timeout: Duration::from_secs(5),
            sndbuf: 4 << 20,
            rcvbuf: 6 << 20,
        }
    }
}

/// One segment, on the wire or waiting for its retransmission timer.
#[derive(Clone, Debug)]
pub struct Segment<P> {
    pub from: usize,
    pub to: usize,
    generation: u64,
    /// 0 is the SYN; data counts from 1.
    pub seq: u64,
    first_sent: Time,
    sent_at: Time,
    /// Retransmissions so far.
    pub attempt: u32,
    pub len: usize,
    /// `None` for the SYN.
    pub payload: Option<P>,
}

/// What the simulator schedules for the transport.
#[derive(Clone, Debug)]
pub enum TcpEvent<P> {
    /// The segment reaches the receiver's host.
    Arrive(Segment<P>),
    /// The sender's retransmission timer for the segment fires.
    Retransmit(Segment<P>),
}

/// The state of a host's kernel, as the transport needs it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HostKernel {
    Up,
    /// Frozen until the given time: accepts and sends nothing.
    Frozen(Time),
    /// Crashed: accepts and sends nothing, ever (until a restart resets its links).
    Down,
    /// Up, but nothing listens on the port yet (the agent has not started): the kernel
    /// answers with a reset.
    NoListener,
}

/// Why a message was not sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection already holds `sndbuf` bytes unaccepted.
    BufferFull,
}

/// Transport counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpStats {
    pub connections_opened: u64,
    pub segments: u64,
    pub retransmissions: u64,
    /// Connections aborted by the user timeout.
    pub aborts: u64,
    /// Segments of aborted or reset connections, dropped.
    pub discarded: u64,
    /// Segments that reached a frozen host and were not ACKed.
    pub not_acked_frozen: u64,
    /// Segments refused by a full receive buffer.
    pub zero_window: u64,
    /// Segments that reached a crashed host.
    pub to_dead: u64,
    /// Messages refused by a full send buffer.
    pub send_buffer_full: u64,
    /// Connections reset because nothing listened at the receiver.
    pub refused: u64,
    /// Connections the application closed (the next message opens a new one).
    pub closed: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Connecting,
    Established,
}

/// One direction: the sender's half and the receiver's half of one connection.
#[derive(Debug)]
struct Link<P> {
    generation: u64,
    state: State,
    next_seq: u64,
    /// Data waiting for the handshake.
    waiting: VecDeque<(P, usize)>,
    /// Bytes sent or waiting, not yet accepted by the receiver.
    unaccepted: usize,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The application closed the connection (the core's `CloseLink`): the next message
    /// opens a new connection.
    closing: bool,
    // The receiver's half.
    rcv_next: u64,
    out_of_order: BTreeMap<u64, (P, usize)>,
    /// Bytes delivered into the receiving socket and not yet read by the process.
    unread: usize,
}

impl<P> Link<P> {
    fn new(generation: u64) -> Link<P> {
        Link {
            generation,
            state: State::Closed,
            next_seq: 1,
            waiting: VecDeque::new(),
            unaccepted: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            closing: false,
            rcv_next: 0,
            out_of_order: BTreeMap::new(),
            unread: 0,
        }
    }

    fn held_bytes(&self) -> usize {
        self.out_of_order.values().map(|(_, len)| len).sum()
    }

    /// Starts the next generation: everything queued is discarded (counted in `stats`);
    /// what the receiving socket already holds stays readable.
    fn reset(&mut self, stats: &mut TcpStats) {
        let discarded = self.waiting.len() + self.out_of_order.len();
        stats.discarded += discarded as u64;
        let unread = self.unread;
        *self = Link::new(self.generation + 1);
        self.unread = unread;
    }
}

/// One sender's links. Invariant: `peers` is strictly increasing and `links[k]` is the
/// connection to `peers[k]` (so iteration runs in receiver order).
#[derive(Debug)]
struct Links<P> {
    peers: Vec<u32>,
    links: Vec<Link<P>>,
}

impl<P> Links<P> {
    fn new() -> Links<P> {
        Links {
            peers: Vec::new(),
            links: Vec::new(),
        }
    }

    fn find(&self, to: usize) -> Result<usize, usize> {
        let to = u32::try_from(to).expect("fewer than 2^32 hosts");
        self.peers.binary_search(&to)
    }

    fn get(&self, to: usize) -> Option<&Link<P>> {
        self.find(to).ok().map(|k| &self.links[k])
    }

    fn get_mut(&mut self, to: usize) -> Option<&mut Link<P>> {
        self.find(to).ok().map(|k| &mut self.links[k])
    }

    /// The link to `to`, created (closed, generation 0) if there is none yet.
    fn entry(&mut self, to: usize) -> &mut Link<P> {
        let k = match self.find(to) {
            Ok(k) => k,
            Err(k) => {
                self.peers.insert(k, to as u32);
                self.links.insert(k, Link::new(0));
                k
            }
        };
        &mut self.links[k]
    }
}

/// Every connection of a cluster.
#[derive(Debug)]
pub struct Tcp<P> {
    pub cfg: TcpConfig,
    /// By sender, then receiver.
    links: Vec<Links<P>>,
    pub stats: TcpStats,
}

impl<P> Tcp<P> {
    pub fn new(cfg: TcpConfig, hosts: usize) -> Tcp<P> {
        Tcp {
            cfg,
            links: (0..hosts).map(|_| Links::new()).collect(),
            stats: TcpStats::default(),
        }
    }

    fn link(&mut self, from: usize, to: usize) -> &mut Link<P> {
        self.links[from].entry(to)
    }

    /// The retransmission timeout of `from → to` now (before backoff).
    pub fn rto(&self, from: usize, to: usize) -> Duration {
        let Some(link) = self.links[from].get(to) else {
            return self.cfg.rto_initial;
        };
        match link.srtt {
            None => self.cfg.rto_initial,
            Some(srtt) => (srtt + (4 * link.rttvar).max(self.cfg.rto_min)).min(self.cfg.rto_max),
        }
    }

    /// A summary of connection `from → to` (for debugging and tests).
    pub fn link_info(&self, from: usize, to: usize) -> Option<String> {
        let l = self.links[from].get(to)?;
        Some(format!(
            "gen {} {:?} next_seq {} waiting {} unaccepted {} srtt {:?} rto {:?} | rcv_next {} held {:?} unread {}",
            l.generation,
            l.state,
            l.next_seq,
            l.waiting.len(),
            l.unaccepted,
            l.srtt,
            self.rto(from, to),
            l.rcv_next,
            l.out_of_order.keys().collect::<Vec<_>>(),
            l.unread
        ))
    }

    /// The smoothed RTT of `from → to`, once sampled.
    pub fn srtt(&self, from: usize, to: usize) -> Option<Duration> {
        self.links[from].get(to).and_then(|l| l.srtt)
    }

    /// The application on `from` writes `payload` (`len` bytes) to `to` at `at` (`at` may
    /// lie ahead of the simulator's clock: the moment the sending process finishes).
    pub fn send(
        &mut self,
        net: &Network,
        rng: &mut ChaCha8Rng,
        at: Time,
        (from, to): (usize, usize),
        (payload, len): (P, usize),
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) -> Result<(), SendError> {
        let sndbuf = self.cfg.sndbuf;
        let link = self.links[from].entry(to);
        if link.closing {
            // The application closed this connection: the next message opens a new one.
            // What the old one still had unaccepted is abandoned (a real close would
            // keep retransmitting it in the background until the peer answers or the
            // user timeout; the cores close a link only once they gave up on it, or
            // after a DISCONNECT that left before this message).
            link.reset(&mut self.stats);
        }
        if link.unaccepted + len > sndbuf {
            self.stats.send_buffer_full += 1;
            return Err(SendError::BufferFull);
        }
        link.unaccepted += len;
        let generation = link.generation;
        match link.state {
            State::Closed => {
                link.state = State::Connecting;
                link.waiting.push_back((payload, len));
                self.stats.connections_opened += 1;
                let syn = Segment {
                    from,
                    to,
                    generation,
                    seq: 0,
                    first_sent: at,
                    sent_at: at,
                    attempt: 0,
                    len: 0,
                    payload: None,
                };
                self.transmit(net, rng, at, syn, out);
            }
            State::Connecting => link.waiting.push_back((payload, len)),
            State::Established => {
                let seq = link.next_seq;
                link.next_seq += 1;
                let seg = Segment {
                    from,
                    to,
                    generation,
                    seq,
                    first_sent: at,
                    sent_at: at,
                    attempt: 0,
                    len,
                    payload: Some(payload),
                };
                self.transmit(net, rng, at, seg, out);
            }
        }
        Ok(())
    }

    /// One transmission of `seg` at `at`: it arrives, or its retransmission timer is set.
    fn transmit(
        &mut self,
        net: &Network,
        rng: &mut ChaCha8Rng,
        at: Time,
        mut seg: Segment<P>,
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) {
        self.stats.segments += 1;
        seg.sent_at = at;
        match net.packet(rng, seg.from, seg.to) {
            Ok(delay) => out.push((at + delay, TcpEvent::Arrive(seg))),
            Err(Drop::Lost | Drop::Partitioned) => {
                let when = self.timer(&seg);
                out.push((when, TcpEvent::Retransmit(seg)));
            }
        }
    }

    /// When the retransmission timer of `seg` (as last transmitted) fires.
    fn timer(&self, seg: &Segment<P>) -> Time {
        let base = if seg.seq == 0 {
            self.cfg.connect_retry
        } else {
            self.rto(seg.from, seg.to)
        };
        let backoff = base
            .checked_mul(1u32 << seg.attempt.min(20))
            .unwrap_or(self.cfg.rto_max)
            .min(self.cfg.rto_max);
        (seg.sent_at + backoff).min(seg.first_sent + self.cfg.user_timeout)
    }

    fn current(&mut self, seg: &Segment<P>) -> bool {
        let live = self.links[seg.from]
            .get(seg.to)
            .is_some_and(|l| l.generation == seg.generation);
        if !live {
            self.stats.discarded += 1;
        }
        live
    }

    /// The retransmission timer of `seg` fired at `now`; `sender` is the sending host's
    /// kernel. Retransmits, defers to the thaw, or aborts the connection.
    pub fn on_retransmit(
        &mut self,
        net: &Network,
        rng: &mut ChaCha8Rng,
        now: Time,
        mut seg: Segment<P>,
        sender: HostKernel,
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) {
        if !self.current(&seg) {
            return;
        }
        match sender {
            HostKernel::Down | HostKernel::NoListener => {
                self.stats.discarded += 1;
                return;
            }
            HostKernel::Frozen(until) => {
                out.push((until.max(now), TcpEvent::Retransmit(seg)));
                return;
            }
            HostKernel::Up => {}
        }
        if now >= seg.first_sent + self.cfg.user_timeout {
            self.abort(seg.from, seg.to);
            self.stats.discarded += 1;
            return;
        }
        seg.attempt += 1;
        self.stats.retransmissions += 1;
        self.transmit(net, rng, now, seg, out);
    }

    /// `seg` reaches its receiver at `now`, whose kernel is `receiver`. Appends the
    /// payloads now deliverable to the receiving process to `delivered`, in order, with
    /// their lengths.
    #[allow(clippy::too_many_arguments)]
    pub fn on_arrive(
        &mut self,
        net: &Network,
        rng: &mut ChaCha8Rng,
        now: Time,
        seg: Segment<P>,
        receiver: HostKernel,
        out: &mut Vec<(Time, TcpEvent<P>)>,
        delivered: &mut Vec<(P, usize)>,
    ) {
        let (from, to) = (seg.from, seg.to);
        let Some(link) = self.links[from]
            .get_mut(to)
            .filter(|l| l.generation == seg.generation)
        else {
            self.stats.discarded += 1;
            return;
        };
        let refuse = match receiver {
            HostKernel::NoListener => {
                // A reset: the connection and everything queued on it are gone.
                self.stats.refused += 1;
                self.stats.discarded += 1;
                link.reset(&mut self.stats);
                return;
            }
            HostKernel::Down => {
                self.stats.to_dead += 1;
                true
            }
            HostKernel::Frozen(_) => {
                self.stats.not_acked_frozen += 1;
                true
            }
            HostKernel::Up => {
                let full = link.unread + link.held_bytes() + seg.len > self.cfg.rcvbuf;
                if full {
                    self.stats.zero_window += 1;
                }
                full
            }
        };
        if refuse {
            // Not ACKed: the sender's timer retransmits it.
            let when = self.timer(&seg).max(now);
            out.push((when, TcpEvent::Retransmit(seg)));
            return;
        }
        let one_way = now - seg.sent_at;
        link.unaccepted = link.unaccepted.saturating_sub(seg.len);
        if seg.attempt == 0 {
            let sample = 2 * one_way;
            match link.srtt {
                None => {
                    link.srtt = Some(sample);
                    link.rttvar = sample / 2;
                }
                Some(srtt) => {
                    let err = srtt.abs_diff(sample);
                    link.rttvar = (link.rttvar * 3 + err) / 4;
                    link.srtt = Some((srtt * 7 + sample) / 8);
                }
            }
        }
        if seg.seq == 0 {
            // SYN: the receiver's half opens; the sender hears the SYN-ACK one delay later
            // and sends what waited.
            link.rcv_next = 1;
            link.state = State::Established;
            let established = now + one_way;
            let waiting = std::mem::take(&mut link.waiting);
            let generation = link.generation;
            for (payload, len) in waiting {
                let link = self.link(from, to);
                let seq = link.next_seq;
                link.next_seq += 1;
                let seg = Segment {
                    from,
                    to,
                    generation,
                    seq,
                    first_sent: established,
                    sent_at: established,
                    attempt: 0,
                    len,
                    payload: Some(payload),
                };
                self.transmit(net, rng, established, seg, out);
            }
            return;
        }
        let Some(payload) = seg.payload else {
            return;
        };
        if seg.seq < link.rcv_next {
            return;
        }
        if seg.seq == link.rcv_next && link.out_of_order.is_empty() {
            // In order with nothing held: straight into the socket.
            link.rcv_next += 1;
            link.unread += seg.len;
            delivered.push((payload, seg.len));
            return;
        }
        link.out_of_order.insert(seg.seq, (payload, seg.len));
        while let Some(entry) = link.out_of_order.remove(&link.rcv_next) {
            link.rcv_next += 1;
            link.unread += entry.1;
            delivered.push(entry);
        }
    }

    /// The process on `to` read `len` bytes that came from `from`.
    pub fn consumed(&mut self, from: usize, to: usize, len: usize) {
        if let Some(link) = self.links[from].get_mut(to) {
            link.unread = link.unread.saturating_sub(len);
        }
    }

    /// Bytes the process on `to` has not read yet from `from`.
    pub fn unread(&self, from: usize, to: usize) -> usize {
        self.links[from].get(to).map_or(0, |l| l.unread)
    }

    /// Aborts `from → to`: everything queued is discarded, the next message reconnects.
    fn abort(&mut self, from: usize, to: usize) {
        self.stats.aborts += 1;
        self.reset(from, to);
    }

    fn reset(&mut self, from: usize, to: usize) {
        if let Some(link) = self.links[from].get_mut(to) {
            link.reset(&mut self.stats);
        }
    }

    /// The application on `from` closed its connection to `to` (after a core dropped the
    /// link): segments already sent still arrive, and the next message opens a new
    /// connection instead of queueing behind a connection that may be stuck.
    pub fn close(&mut self, from: usize, to: usize) {
        if let Some(link) = self.links[from].get_mut(to) {
            if !matches!(link.state, State::Closed) {
                link.closing = true;
                self.stats.closed += 1;
            }
        }
    }

    /// Host `h` restarted: every connection from and to it starts afresh.
    pub fn reset_host(&mut self, h: usize) {
        let peers: Vec<usize> = self.links[h].peers.iter().map(|&p| p as usize).collect();
        for to in peers {
            self.reset(h, to);
            if let Some(link) = self.links[h].get_mut(to) {
                link.unread = 0;
            }
        }
        for from in 0..self.links.len() {
            self.reset(from, h);
            if let Some(link) = self.links[from].get_mut(h) {
                link.unread = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetConfig;
    use crate::queue::EventQueue;
    use rand::SeedableRng;

    /// Drives the transport of a two-host network; records what host 1 receives.
    struct Bench {
        net: Network,
        rng: ChaCha8Rng,
        tcp: Tcp<u32>,
        queue: EventQueue<TcpEvent<u32>>,
        received: Vec<(Time, u32)>,
        retransmitted_at: Vec<Time>,
        /// Host 1 is frozen during this interval.
        frozen: Option<(Time, Time)>,
        out: Vec<(Time, TcpEvent<u32>)>,
    }

    impl Bench {
        fn new() -> Bench {
            Bench {
                net: Network::new(NetConfig::default(), 2, 7),
                rng: ChaCha8Rng::seed_from_u64(5),
                tcp: Tcp::new(TcpConfig::default(), 2),
                queue: EventQueue::new(),
                received: Vec::new(),
                retransmitted_at: Vec::new(),
                frozen: None,
                out: Vec::new(),
            }
        }

        fn send(&mut self, at: Time, payload: u32) {
            self.tcp
                .send(
                    &self.net,
                    &mut self.rng,
                    at,
                    (0, 1),
                    (payload, 100),
                    &mut self.out,
                )
                .unwrap();
            self.flush();
        }

        fn flush(&mut self) {
            for (at, ev) in self.out.drain(..) {
                self.queue.push(at, ev);
            }
        }

        fn run_until(&mut self, until: Time) {
            while let Some((now, ev)) = self.queue.pop_until(until) {
                match ev {
                    TcpEvent::Arrive(seg) => {
                        let receiver = match self.frozen {
                            Some((a, b)) if now >= a && now < b => HostKernel::Frozen(b),
                            _ => HostKernel::Up,
                        };
                        let mut got = Vec::new();
                        self.tcp.on_arrive(
                            &self.net,
                            &mut self.rng,
                            now,
                            seg,
                            receiver,
                            &mut self.out,
                            &mut got,
                        );
                        for (p, len) in got {
                            self.tcp.consumed(0, 1, len);
                            self.received.push((now, p));
                        }
                    }
                    TcpEvent::Retransmit(seg) => {
                        if seg.seq > 0 {
                            self.retransmitted_at.push(now);
                        }
                        self.tcp.on_retransmit(
                            &self.net,
                            &mut self.rng,
                            now,
                            seg,
                            HostKernel::Up,
                            &mut self.out,
                        );
                    }
                }
                self.flush();
            }
        }
    }

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn a_lost_segment_holds_back_the_next_one_for_at_least_the_rto() {
        let mut b = Bench::new();
        b.send(ms(0), 1);
        b.run_until(ms(100));
        assert_eq!(b.received.len(), 1, "the handshake and the first message");
        // Segment 2 is dropped (a one-way block while it is sent); segment 3 gets through.
        b.net.block_one_way(0, 1);
        b.send(ms(100), 2);
        b.net.heal();
        b.send(ms(101), 3);
        b.run_until(ms(2_000));
        let got: Vec<u32> = b.received.iter().map(|r| r.1).collect();
        assert_eq!(got, [1, 2, 3], "in order");
        let (t2, t3) = (b.received[1].0, b.received[2].0);
        assert!(t2 >= ms(300), "2 came with its retransmission, at {t2}");
        assert!(t3 >= t2, "3 waited for 2");
        assert!(
            t3 - ms(101) >= Duration::from_millis(200),
            "3 held {:?}",
            t3 - ms(101)
        );
        assert_eq!(b.tcp.stats.retransmissions, 1);
    }

    #[test]
    fn the_rto_follows_the_rtt_with_a_200_ms_floor_and_doubles_per_retransmission() {
        let mut b = Bench::new();
        for i in 0..20 {
            b.send(ms(i * 10), i as u32);
        }
        b.run_until(ms(500));
        let srtt = b.tcp.srtt(0, 1).expect("sampled");
        assert!(srtt < Duration::from_millis(5), "{srtt:?}");
        let rto = b.tcp.rto(0, 1);
        assert!(
            rto >= Duration::from_millis(200) && rto < Duration::from_millis(220),
            "{rto:?}"
        );
        // A partition: the segment is retransmitted at +rto, +3 rto, +7 rto, ...
        b.net.partition(vec![0, 1]);
        b.send(ms(1_000), 99);
        b.run_until(ms(2_500));
        assert_eq!(b.retransmitted_at.len(), 3, "{:?}", b.retransmitted_at);
        let mut times = vec![ms(1_000)];
        times.extend(&b.retransmitted_at);
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
        for pair in gaps.windows(2) {
            let ratio = pair[1].as_secs_f64() / pair[0].as_secs_f64();
            assert!((1.99..2.01).contains(&ratio), "{gaps:?}");
        }
        // Healed at 2.5 s: it arrives with the next retransmission (8 rto after the one at
        // 2.4 s, so about 4.0 s), not before.
        b.net.heal();
        b.run_until(ms(3_990));
        assert!(b.received.iter().all(|r| r.1 != 99), "{:?}", b.received);
        b.run_until(ms(4_100));
        let (at, _) = *b.received.iter().find(|r| r.1 == 99).expect("arrived");
        assert!(at >= ms(4_000), "{at}");
    }

    #[test]
    fn the_user_timeout_aborts_and_the_next_message_reconnects() {
        let mut b = Bench::new();
        b.send(ms(0), 1);
        b.run_until(ms(100));
        b.net.partition(vec![0, 1]);
        b.send(ms(100), 2);
        b.send(ms(200), 3);
        b.run_until(ms(5_200));
        assert_eq!(b.tcp.stats.aborts, 1);
        assert!(b.tcp.stats.discarded >= 2, "{:?}", b.tcp.stats);
        b.net.heal();
        b.run_until(ms(10_000));
        assert_eq!(
            b.received.len(),
            1,
            "2 and 3 were discarded with the connection"
        );
        b.send(ms(10_000), 4);
        b.run_until(ms(10_100));
        assert_eq!(b.received.last().unwrap().1, 4);
        assert_eq!(b.tcp.stats.connections_opened, 2);
    }

    #[test]
    fn a_frozen_receiver_gets_the_data_at_the_first_retransmission_after_the_thaw() {
        let mut b = Bench::new();
        b.send(ms(0), 1);
        b.run_until(ms(100));
        b.frozen = Some((ms(100), ms(450)));
        b.send(ms(150), 2);
        b.run_until(ms(2_000));
        let (at, p) = b.received[1];
        assert_eq!(p, 2);
        // Not ACKed while frozen: retransmitted at ~350 ms (still frozen), then ~750 ms.
        assert!(at >= ms(450), "{at}");
        assert!(at >= ms(740) && at < ms(800), "{at}");
        assert!(b.tcp.stats.not_acked_frozen >= 2);
    }
}
