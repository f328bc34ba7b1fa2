//! TCP between the cores: one connection per direction `(from, to)`, in order, lost
//! segments retransmitted on a Linux-like timer.
//!
//! Model (one message = one segment; messages are far below an MSS except large records,
//! and a message is what the core hands over as a unit):
//! - each host keeps its own ends of its connections ([`Endpoint`]: the sending halves by
//!   receiver, the receiving halves by sender), and nothing here touches another host's
//!   end: the receiver's kernel answers the sender by an event one one-way delay later
//!   (the SYN-ACK, a reset), and the simulator hands a refusal to the sender at its next
//!   window boundary (see [`crate::sim`]);
//! - a connection opens on the first message: a SYN (sequence 0) goes out, and data
//!   waits until it arrives; the sender learns of it one more one-way delay later (the
//!   SYN-ACK takes the SYN's delay back; a lost SYN-ACK is not modelled) and sends the
//!   waiting data then;
//! - the sender counts data as accepted (ACKed) one round trip after it sent it, in order,
//!   unless the receiver refused it: that frees its room in the send buffer and gives the
//!   RTT sample;
//! - every segment is lost or delayed like a packet ([`Network::packet`]); a segment that
//!   was lost, partitioned, or arrived at a frozen host (not ACKed) or into a full receive
//!   buffer (zero window) is retransmitted by the sender's timer, armed when it was sent:
//!   `rto × 2^k` after its k-th transmission (k = 0, 1, ...), capped at `rto_max`. A SYN uses `connect_retry`
//!   (250 ms: the shell's connect timeout, after which it connects again; Linux alone
//!   would wait for its 1 s `TCP_TIMEOUT_INIT`) as its base, data the RTO from the RTT
//!   samples;
//! - the RTO follows Linux: `srtt + max(4·rttvar, rto_min)` (Linux keeps its `rttvar` at
//!   least `tcp_rto_min`, 200 ms), from samples taken on segments transmitted once and
//!   accepted (Karn); the sample is the segment's one-way delay doubled (the ACK is not
//!   drawn);
//!   before the first sample the RTO is `rto_initial`;
//! - the receiver delivers in sequence order: a segment that arrives after a gap waits
//!   (SACK keeps it: only the missing one is retransmitted) and everything behind a lost
//!   segment is held until that one is retransmitted and arrives (head-of-line blocking).
//!   Duplicates cannot arise (a segment is retransmitted only if it was not accepted);
//! - `user_timeout` (Linux `TCP_USER_TIMEOUT`, 5 s): a segment still not accepted that
//!   long after its first transmission aborts the connection (the retransmission timer
//!   is clamped to fire then, as Linux does). Everything queued on it, in flight or
//!   waiting, is discarded, and the next message opens a new connection with a new SYN
//!   (the receiver's half starts afresh when the newer connection's first segment
//!   arrives; segments of the old one still on the wire are accepted until then, as the
//!   old socket would);
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
//! closed window). Each end keeps its halves in a small table sorted by peer (`Halves`: a
//! lookup is a binary search over a few dozen contiguous indices, where an ordered map
//! touched a large node per level), so iteration is deterministic.
//!
//! Invariants: per connection, payloads reach the receiver in the order they were sent,
//! each at most once; the connection's generation tags every segment, and a segment of a
//! generation older than the end's current one is discarded wherever it turns up.

use crate::network::{Drop, Network};
use minuteman_core::Time;
use rand::Rng;
use serde::Serialize;
use smallvec::SmallVec;
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
    /// When its retransmission timer fires if it is not accepted (armed at the send).
    timer_at: Time,
    /// Retransmissions so far.
    pub attempt: u32,
    pub len: usize,
    /// `None` for the SYN.
    pub payload: Option<P>,
}

impl<P> Segment<P> {
    /// A segment's first transmission, at `at` (`seq` 0 is the SYN).
    fn first(
        (from, to): (usize, usize),
        generation: u64,
        seq: u64,
        at: Time,
        (payload, len): (Option<P>, usize),
    ) -> Segment<P> {
        Segment {
            from,
            to,
            generation,
            seq,
            first_sent: at,
            sent_at: at,
            timer_at: at,
            attempt: 0,
            len,
            payload,
        }
    }
}

/// What the receiver's kernel tells the sender, one one-way delay after a segment arrived:
/// rare (once per connection, or a refusal), so it travels as an event to the sender.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The sender of the segment answered (the host this event is for).
    pub from: usize,
    pub to: usize,
    generation: u64,
    kind: AnswerKind,
}

#[derive(Clone, Debug)]
enum AnswerKind {
    /// The SYN was accepted: the connection is open (with the handshake's RTT sample).
    SynAck { sample: Option<Duration> },
    /// Nothing listens at the receiver: the connection is reset.
    Reset,
}

/// What the simulator schedules for the transport.
#[derive(Clone, Debug)]
pub enum TcpEvent<P> {
    /// The segment reaches the receiver's host.
    Arrive(Segment<P>),
    /// The sender's retransmission timer for the segment fires.
    Retransmit(Segment<P>),
    /// The receiver's kernel's answer reaches the sender.
    Answer(Answer),
}

impl<P> TcpEvent<P> {
    /// The host whose state the event belongs to (the one it happens at).
    pub fn host(&self) -> usize {
        match self {
            TcpEvent::Arrive(seg) => seg.to,
            TcpEvent::Retransmit(seg) => seg.from,
            TcpEvent::Answer(a) => a.from,
        }
    }
}

/// A data segment the receiver did not accept (its host was down or frozen, or its
/// socket full), reported to the sender's half. Rare, and it schedules nothing, so it is
/// not an event: the simulator hands it to the sender at its next window boundary, which
/// comes before the ACK the sender would otherwise count on (the boundary is at most the
/// least one-way latency after the arrival; the ACK takes a one-way latency back).
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The sender of the data.
    pub from: usize,
    pub to: usize,
    generation: u64,
    seq: u64,
}

/// A data segment on the wire, as its sender counts it: accepted (its ACK back) at
/// `ack_at` unless refused before.
#[derive(Clone, Debug)]
struct InFlight {
    ack_at: Time,
    seq: u64,
    len: u32,
    /// The RTT sample in nanoseconds, 0 for none (a retransmission: Karn).
    sample_ns: u32,
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

impl TcpStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &TcpStats) {
        self.connections_opened += other.connections_opened;
        self.segments += other.segments;
        self.retransmissions += other.retransmissions;
        self.aborts += other.aborts;
        self.discarded += other.discarded;
        self.not_acked_frozen += other.not_acked_frozen;
        self.zero_window += other.zero_window;
        self.to_dead += other.to_dead;
        self.send_buffer_full += other.send_buffer_full;
        self.refused += other.refused;
        self.closed += other.closed;
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Connecting,
    Established,
}

/// The sender's half of one connection.
#[derive(Debug)]
struct TxHalf<P> {
    generation: u64,
    state: State,
    next_seq: u64,
    /// Data waiting for the handshake.
    waiting: VecDeque<(P, usize)>,
    /// Bytes sent or waiting, not yet known to be accepted by the receiver.
    unaccepted: usize,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The application closed the connection (the core's `CloseLink`): the next message
    /// opens a new connection.
    closing: bool,
    /// Data segments on the wire, in transmission order, until their ACK is counted
    /// (inline: a link rarely has more than one in flight when it sends again).
    in_flight: SmallVec<[InFlight; 2]>,
}

impl<P> TxHalf<P> {
    fn new(generation: u64) -> TxHalf<P> {
        TxHalf {
            generation,
            state: State::Closed,
            next_seq: 1,
            waiting: VecDeque::new(),
            unaccepted: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            closing: false,
            in_flight: SmallVec::new(),
        }
    }

    /// Counts the ACKs due by `now`, in order (cumulative, as TCP's are): the data no
    /// longer counts against the send buffer, and a first transmission gives a sample.
    fn settle(&mut self, now: Time) {
        let due = self
            .in_flight
            .iter()
            .take_while(|f| f.ack_at <= now)
            .count();
        if due == 0 {
            return;
        }
        for k in 0..due {
            let done = self.in_flight[k].clone();
            self.unaccepted = self.unaccepted.saturating_sub(done.len as usize);
            if done.sample_ns > 0 {
                self.sample(Duration::from_nanos(u64::from(done.sample_ns)));
            }
        }
        self.in_flight.drain(..due);
    }

    /// The next data segment of this connection, sent first at `at`.
    fn next_data(
        &mut self,
        ends: (usize, usize),
        at: Time,
        (payload, len): (P, usize),
    ) -> Segment<P> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Segment::first(ends, self.generation, seq, at, (Some(payload), len))
    }

    /// Starts the next generation: what waited for the handshake is discarded.
    fn reset(&mut self, stats: &mut TcpStats) {
        stats.discarded += self.waiting.len() as u64;
        *self = TxHalf::new(self.generation + 1);
    }

    fn sample(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let err = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + err) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }
}

/// The receiver's half of one connection.
#[derive(Debug)]
struct RxHalf<P> {
    /// The newest connection (generation) seen from this sender.
    generation: u64,
    rcv_next: u64,
    out_of_order: BTreeMap<u64, (P, usize)>,
    /// Bytes delivered into the receiving socket and not yet read by the process.
    unread: usize,
}

impl<P> RxHalf<P> {
    fn new(generation: u64) -> RxHalf<P> {
        RxHalf {
            generation,
            rcv_next: 0,
            out_of_order: BTreeMap::new(),
            unread: 0,
        }
    }

    fn held_bytes(&self) -> usize {
        self.out_of_order.values().map(|(_, len)| len).sum()
    }

    /// A newer connection from the same sender: what the old one held out of order is
    /// discarded; what the socket already holds stays readable.
    fn renew(&mut self, generation: u64, stats: &mut TcpStats) {
        stats.discarded += self.out_of_order.len() as u64;
        let unread = self.unread;
        *self = RxHalf::new(generation);
        self.unread = unread;
    }
}

/// One host's halves of its connections with one side of each pair: a small table sorted
/// by the peer. Invariant: `peers` is strictly increasing and `halves[k]` belongs to
/// `peers[k]` (so iteration runs in peer order).
#[derive(Debug)]
pub struct Halves<H> {
    peers: Vec<u32>,
    halves: Vec<H>,
}

impl<H> Default for Halves<H> {
    fn default() -> Self {
        Halves {
            peers: Vec::new(),
            halves: Vec::new(),
        }
    }
}

impl<H> Halves<H> {
    fn find(&self, peer: usize) -> Result<usize, usize> {
        let peer = u32::try_from(peer).expect("fewer than 2^32 hosts");
        self.peers.binary_search(&peer)
    }

    fn get(&self, peer: usize) -> Option<&H> {
        self.find(peer).ok().map(|k| &self.halves[k])
    }

    fn get_mut(&mut self, peer: usize) -> Option<&mut H> {
        self.find(peer).ok().map(|k| &mut self.halves[k])
    }

    /// The half for `peer`, created by `new` if there is none yet.
    fn entry(&mut self, peer: usize, new: impl FnOnce() -> H) -> &mut H {
        let k = match self.find(peer) {
            Ok(k) => k,
            Err(k) => {
                self.peers.insert(k, peer as u32);
                self.halves.insert(k, new());
                k
            }
        };
        &mut self.halves[k]
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut H)> {
        self.peers
            .iter()
            .map(|&p| p as usize)
            .zip(self.halves.iter_mut())
    }
}

/// A host's end of the transport: the sending halves of its connections (by receiver) and
/// the receiving halves (by sender). Each host owns its own; nothing here is touched by
/// another host's events.
#[derive(Debug)]
pub struct Endpoint<P> {
    tx: Halves<TxHalf<P>>,
    rx: Halves<RxHalf<P>>,
}

impl<P> Default for Endpoint<P> {
    fn default() -> Self {
        Endpoint {
            tx: Halves::default(),
            rx: Halves::default(),
        }
    }
}

impl<P> Endpoint<P> {
    /// The smoothed RTT of this host's connection to `to`, once sampled.
    pub fn srtt(&self, to: usize) -> Option<Duration> {
        self.tx.get(to).and_then(|l| l.srtt)
    }

    /// Bytes the process has not read yet from `from`.
    pub fn unread(&self, from: usize) -> usize {
        self.rx.get(from).map_or(0, |l| l.unread)
    }

    /// The process read `len` bytes that came from `from`.
    pub fn consumed(&mut self, from: usize, len: usize) {
        if let Some(half) = self.rx.get_mut(from) {
            half.unread = half.unread.saturating_sub(len);
        }
    }

    /// This host restarted: every connection it had, both ways, is gone. Its peers'
    /// halves are reset by [`Endpoint::peer_restarted`].
    pub fn restarted(&mut self, stats: &mut TcpStats) {
        for (_, half) in self.tx.iter_mut() {
            half.reset(stats);
        }
        for (_, half) in self.rx.iter_mut() {
            // The sender's half moves to the next generation too (its peer_restarted):
            // what is still on the wire from the old connection is discarded.
            let generation = half.generation + 1;
            half.renew(generation, stats);
            half.unread = 0;
        }
    }

    /// Host `h` restarted: this host's connection to it starts afresh, and what it had
    /// sent here and was not read is gone.
    pub fn peer_restarted(&mut self, h: usize, stats: &mut TcpStats) {
        if let Some(half) = self.tx.get_mut(h) {
            half.reset(stats);
        }
        if let Some(half) = self.rx.get_mut(h) {
            let generation = half.generation + 1;
            half.renew(generation, stats);
            half.unread = 0;
        }
    }
}

/// The transport's rules and counters (one per simulator shard; the connection state
/// lives in each host's [`Endpoint`]).
#[derive(Debug)]
pub struct Tcp {
    pub cfg: TcpConfig,
    pub stats: TcpStats,
}

impl Tcp {
    pub fn new(cfg: TcpConfig) -> Tcp {
        Tcp {
            cfg,
            stats: TcpStats::default(),
        }
    }

    /// The retransmission timeout of `end`'s connection to `to` now (before backoff).
    pub fn rto<P>(&self, end: &Endpoint<P>, to: usize) -> Duration {
        let Some(half) = end.tx.get(to) else {
            return self.cfg.rto_initial;
        };
        match half.srtt {
            None => self.cfg.rto_initial,
            Some(srtt) => (srtt + (4 * half.rttvar).max(self.cfg.rto_min)).min(self.cfg.rto_max),
        }
    }

    /// A summary of the connection `from → to`, given both hosts' endpoints (debugging).
    pub fn link_info<P>(
        &self,
        (from, sender): (usize, &Endpoint<P>),
        (to, receiver): (usize, &Endpoint<P>),
    ) -> Option<String> {
        let l = sender.tx.get(to)?;
        let r = receiver.rx.get(from);
        Some(format!(
            "gen {} {:?} next_seq {} waiting {} unaccepted {} srtt {:?} rto {:?} | gen {:?} rcv_next {:?} held {:?} unread {}",
            l.generation,
            l.state,
            l.next_seq,
            l.waiting.len(),
            l.unaccepted,
            l.srtt,
            self.rto(sender, to),
            r.map(|r| r.generation),
            r.map(|r| r.rcv_next),
            r.map(|r| r.out_of_order.keys().collect::<Vec<_>>()),
            receiver.unread(from)
        ))
    }

    /// The application on `from` (whose endpoint is `end`) writes `payload` (`len` bytes)
    /// to `to` at `at`, now or ahead of the simulator's clock `now` (the moment the
    /// sending process finishes). What the sender knows is what it knows `now`: ACKs due
    /// by then (a refusal of an earlier segment is always known by its ACK's time).
    #[allow(clippy::too_many_arguments)]
    pub fn send<P>(
        &mut self,
        net: &Network,
        rng: &mut impl Rng,
        (now, at): (Time, Time),
        (from, to): (usize, usize),
        end: &mut Endpoint<P>,
        (payload, len): (P, usize),
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) -> Result<(), SendError> {
        let sndbuf = self.cfg.sndbuf;
        let half = end.tx.entry(to, || TxHalf::new(0));
        half.settle(now.min(at));
        if half.closing {
            // The application closed this connection: the next message opens a new one.
            // What the old one still had unaccepted is abandoned (a real close would
            // keep retransmitting it in the background until the peer answers or the
            // user timeout; the cores close a link only once they gave up on it, or
            // after a DISCONNECT that left before this message).
            half.reset(&mut self.stats);
        }
        if half.unaccepted + len > sndbuf {
            self.stats.send_buffer_full += 1;
            return Err(SendError::BufferFull);
        }
        half.unaccepted += len;
        let generation = half.generation;
        match half.state {
            State::Closed => {
                half.state = State::Connecting;
                half.waiting.push_back((payload, len));
                self.stats.connections_opened += 1;
                let syn = Segment::first((from, to), generation, 0, at, (None, 0));
                self.transmit(net, rng, at, end, syn, out);
            }
            State::Connecting => half.waiting.push_back((payload, len)),
            State::Established => {
                let seg = half.next_data((from, to), at, (payload, len));
                self.transmit(net, rng, at, end, seg, out);
            }
        }
        Ok(())
    }

    /// One transmission of `seg` at `at` by its sender (`end`): it arrives, or its
    /// retransmission timer is set. The timer is armed either way (`timer_at`), as a
    /// kernel arms it at the send: a refusal at the receiver waits for it. Data that gets
    /// through is counted accepted one round trip later, unless refused before.
    fn transmit<P>(
        &mut self,
        net: &Network,
        rng: &mut impl Rng,
        at: Time,
        end: &mut Endpoint<P>,
        mut seg: Segment<P>,
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) {
        self.stats.segments += 1;
        seg.sent_at = at;
        seg.timer_at = self.timer(end, &seg);
        match net.packet(rng, seg.from, seg.to) {
            Ok(delay) => {
                if seg.seq > 0 {
                    if let Some(half) = end.tx.get_mut(seg.to) {
                        let rtt = u32::try_from((2 * delay).as_nanos()).unwrap_or(u32::MAX);
                        half.in_flight.push(InFlight {
                            ack_at: at + 2 * delay,
                            seq: seg.seq,
                            len: u32::try_from(seg.len).unwrap_or(u32::MAX),
                            sample_ns: if seg.attempt == 0 { rtt.max(1) } else { 0 },
                        });
                    }
                }
                out.push((at + delay, TcpEvent::Arrive(seg)));
            }
            Err(Drop::Lost | Drop::Partitioned) => {
                let when = seg.timer_at;
                out.push((when, TcpEvent::Retransmit(seg)));
            }
        }
    }

    /// When the retransmission timer of `seg` (as last transmitted) fires.
    fn timer<P>(&self, end: &Endpoint<P>, seg: &Segment<P>) -> Time {
        let base = if seg.seq == 0 {
            self.cfg.connect_retry
        } else {
            self.rto(end, seg.to)
        };
        let backoff = base
            .checked_mul(1u32 << seg.attempt.min(20))
            .unwrap_or(self.cfg.rto_max)
            .min(self.cfg.rto_max);
        (seg.sent_at + backoff).min(seg.first_sent + self.cfg.user_timeout)
    }

    /// Whether `seg` belongs to the sender's current connection.
    fn current<P>(&mut self, end: &Endpoint<P>, to: usize, generation: u64) -> bool {
        let live = end.tx.get(to).is_some_and(|l| l.generation == generation);
        if !live {
            self.stats.discarded += 1;
        }
        live
    }

    /// The retransmission timer of `seg` fired at `now` on its sender (`end`, whose kernel
    /// is `sender`). Retransmits, defers to the thaw, or aborts the connection.
    #[allow(clippy::too_many_arguments)]
    pub fn on_retransmit<P>(
        &mut self,
        net: &Network,
        rng: &mut impl Rng,
        now: Time,
        mut seg: Segment<P>,
        end: &mut Endpoint<P>,
        sender: HostKernel,
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) {
        if !self.current(end, seg.to, seg.generation) {
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
            self.stats.aborts += 1;
            if let Some(half) = end.tx.get_mut(seg.to) {
                half.reset(&mut self.stats);
            }
            self.stats.discarded += 1;
            return;
        }
        seg.attempt += 1;
        self.stats.retransmissions += 1;
        if let Some(half) = end.tx.get_mut(seg.to) {
            half.settle(now);
        }
        self.transmit(net, rng, now, end, seg, out);
    }

    /// `seg` reaches its receiver (`end`, whose kernel is `receiver`) at `now`. Appends the
    /// payloads now deliverable to the receiving process to `delivered`, in order, with
    /// their lengths. The sender counts accepted data as ACKed one round trip after it sent
    /// it; it hears of a refused data segment through `refusals`, and of the SYN-ACK or a
    /// reset through an [`Answer`] one one-way delay later; a refused segment goes back to
    /// its sender's retransmission timer.
    #[allow(clippy::too_many_arguments)]
    pub fn on_arrive<P>(
        &mut self,
        now: Time,
        seg: Segment<P>,
        end: &mut Endpoint<P>,
        receiver: HostKernel,
        out: &mut Vec<(Time, TcpEvent<P>)>,
        delivered: &mut Vec<(P, usize)>,
        refusals: &mut Vec<Refusal>,
    ) {
        let (from, to) = (seg.from, seg.to);
        let one_way = now - seg.sent_at;
        let half = end.rx.entry(from, || RxHalf::new(seg.generation));
        if seg.generation < half.generation {
            // A segment of a connection the sender has since replaced.
            self.stats.discarded += 1;
            return;
        }
        if seg.generation > half.generation {
            half.renew(seg.generation, &mut self.stats);
        }
        let refuse = match receiver {
            HostKernel::NoListener => {
                // A reset: the connection and everything queued on it are gone.
                self.stats.refused += 1;
                self.stats.discarded += 1;
                let answer = Answer {
                    from,
                    to,
                    generation: seg.generation,
                    kind: AnswerKind::Reset,
                };
                out.push((now + one_way, TcpEvent::Answer(answer)));
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
                let full = half.unread + half.held_bytes() + seg.len > self.cfg.rcvbuf;
                if full {
                    self.stats.zero_window += 1;
                }
                full
            }
        };
        if refuse {
            // Not ACKed: the sender's timer, armed at the send, retransmits it (no sooner
            // than the sender could know: one delay back).
            if seg.seq > 0 {
                refusals.push(Refusal {
                    from,
                    to,
                    generation: seg.generation,
                    seq: seg.seq,
                });
            }
            let when = seg.timer_at.max(now + one_way);
            out.push((when, TcpEvent::Retransmit(seg)));
            return;
        }
        if seg.seq == 0 {
            let sample = (seg.attempt == 0).then_some(2 * one_way);
            // SYN: the receiver's half opens; the sender hears the SYN-ACK one delay later
            // and sends what waited.
            half.rcv_next = half.rcv_next.max(1);
            let answer = Answer {
                from,
                to,
                generation: seg.generation,
                kind: AnswerKind::SynAck { sample },
            };
            out.push((now + one_way, TcpEvent::Answer(answer)));
            return;
        }
        let Some(payload) = seg.payload else {
            return;
        };
        if seg.seq < half.rcv_next {
            return;
        }
        if seg.seq == half.rcv_next && half.out_of_order.is_empty() {
            // In order with nothing held: straight into the socket.
            half.rcv_next += 1;
            half.unread += seg.len;
            delivered.push((payload, seg.len));
            return;
        }
        half.out_of_order.insert(seg.seq, (payload, seg.len));
        while let Some(entry) = half.out_of_order.remove(&half.rcv_next) {
            half.rcv_next += 1;
            half.unread += entry.1;
            delivered.push(entry);
        }
    }

    /// The receiver's answer reaches the sender (`end`) at `now`: a SYN-ACK sends what
    /// waited for the handshake, a reset drops the connection.
    pub fn on_answer<P>(
        &mut self,
        net: &Network,
        rng: &mut impl Rng,
        now: Time,
        answer: Answer,
        end: &mut Endpoint<P>,
        out: &mut Vec<(Time, TcpEvent<P>)>,
    ) {
        let Answer {
            from,
            to,
            generation,
            kind,
        } = answer;
        let Some(half) = end.tx.get_mut(to).filter(|h| h.generation == generation) else {
            self.stats.discarded += 1;
            return;
        };
        half.settle(now);
        match kind {
            AnswerKind::Reset => half.reset(&mut self.stats),
            AnswerKind::SynAck { sample } => {
                if let Some(sample) = sample {
                    half.sample(sample);
                }
                if half.state != State::Connecting {
                    return;
                }
                half.state = State::Established;
                let waiting = std::mem::take(&mut half.waiting);
                for data in waiting {
                    let half = end.tx.get_mut(to).expect("answered above");
                    let seg = half.next_data((from, to), now, data);
                    self.transmit(net, rng, now, end, seg, out);
                }
            }
        }
    }

    /// The sender (`end`) hears that the receiver refused a data segment: it stays
    /// unaccepted, and gives no sample (its retransmission is on its way).
    pub fn on_refused<P>(&mut self, refusal: &Refusal, end: &mut Endpoint<P>) {
        let Some(half) = end
            .tx
            .get_mut(refusal.to)
            .filter(|h| h.generation == refusal.generation)
        else {
            return;
        };
        if let Some(k) = half.in_flight.iter().position(|f| f.seq == refusal.seq) {
            half.in_flight.remove(k);
        }
    }

    /// The application on the host of `end` closed its connection to `to` (after a core
    /// dropped the link): segments already sent still arrive, and the next message opens
    /// a new connection instead of queueing behind a connection that may be stuck.
    pub fn close<P>(&mut self, end: &mut Endpoint<P>, to: usize) {
        if let Some(half) = end.tx.get_mut(to) {
            if !matches!(half.state, State::Closed) {
                half.closing = true;
                self.stats.closed += 1;
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
    use rand_chacha::ChaCha8Rng;

    /// Drives the transport of a two-host network; records what host 1 receives. Refusals
    /// reach the sender at once (the simulator hands them over at its next window).
    struct Bench {
        net: Network,
        rng: ChaCha8Rng,
        tcp: Tcp,
        ends: [Endpoint<u32>; 2],
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
                tcp: Tcp::new(TcpConfig::default()),
                ends: [Endpoint::default(), Endpoint::default()],
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
                    (at, at),
                    (0, 1),
                    &mut self.ends[0],
                    (payload, 100),
                    &mut self.out,
                )
                .unwrap();
            self.flush();
        }

        fn flush(&mut self) {
            for (at, ev) in self.out.drain(..) {
                self.queue.push_next(at, ev);
            }
        }

        fn srtt(&self) -> Option<Duration> {
            self.ends[0].srtt(1)
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
                        let mut refusals = Vec::new();
                        self.tcp.on_arrive(
                            now,
                            seg,
                            &mut self.ends[1],
                            receiver,
                            &mut self.out,
                            &mut got,
                            &mut refusals,
                        );
                        for refusal in &refusals {
                            self.tcp.on_refused(refusal, &mut self.ends[0]);
                        }
                        for (p, len) in got {
                            self.ends[1].consumed(0, len);
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
                            &mut self.ends[0],
                            HostKernel::Up,
                            &mut self.out,
                        );
                    }
                    TcpEvent::Answer(answer) => self.tcp.on_answer(
                        &self.net,
                        &mut self.rng,
                        now,
                        answer,
                        &mut self.ends[0],
                        &mut self.out,
                    ),
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
        let srtt = b.srtt().expect("sampled");
        assert!(srtt < Duration::from_millis(5), "{srtt:?}");
        let rto = b.tcp.rto(&b.ends[0], 1);
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
