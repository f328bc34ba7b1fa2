//! What crosses between hosts: messages as segments through the TCP model (or as
//! datagrams on the ideal network), and host probes (a SYN answered by the target's
//! kernel as it is when the SYN arrives).
//!
//! Invariant: everything sent here reaches another host as an event at least the least
//! one-way latency later, scheduled by the sender; a refusal goes back as mail.

use super::*;

impl Ctx<'_> {
    /// The transport moved a segment: deliver what is now in order, or retransmit.
    pub(super) fn segment(&mut self, event: TcpEvent<Payload>) {
        if self.local.tcp.is_none() {
            return;
        }
        let mut out = std::mem::take(&mut self.local.segments);
        let now = self.now;
        let host = event.host();
        match event {
            TcpEvent::Arrive(seg) => {
                let (from, to) = (seg.from, seg.to);
                let receiver = host_kernel(self.r(to), now);
                if matches!(receiver, HostKernel::Down | HostKernel::NoListener) {
                    self.local.traffic.to_dead += 1;
                }
                let mut delivered = std::mem::take(&mut self.local.delivered);
                let mut refusals = std::mem::take(&mut self.local.refusals);
                let tcp = self.local.tcp.as_mut().expect("checked above");
                let end = &mut self.nodes[to - self.base].tcp;
                tcp.on_arrive(
                    now,
                    seg,
                    end,
                    receiver,
                    &mut out,
                    &mut delivered,
                    &mut refusals,
                );
                self.push_segments(host, &mut out);
                // Back before the inputs are handled: their sends reuse it.
                self.local.segments = out;
                for refusal in refusals.drain(..) {
                    self.mail(to, from, MailKind::Refused(refusal));
                }
                self.local.refusals = refusals;
                for (envelope, len) in delivered.drain(..) {
                    self.accept_input(
                        to,
                        Input::Message {
                            from,
                            envelope,
                            len,
                        },
                    );
                }
                self.local.delivered = delivered;
            }
            TcpEvent::Retransmit(seg) => {
                let sender = host_kernel(self.r(seg.from), now);
                let tcp = self.local.tcp.as_mut().expect("checked above");
                let slot = &mut self.nodes[host - self.base];
                tcp.on_retransmit(
                    self.network,
                    &mut slot.rng,
                    now,
                    seg,
                    &mut slot.tcp,
                    sender,
                    &mut out,
                );
                self.push_segments(host, &mut out);
                self.local.segments = out;
            }
            TcpEvent::Answer(answer) => {
                match host_kernel(self.r(host), now) {
                    HostKernel::Up => {
                        let tcp = self.local.tcp.as_mut().expect("checked above");
                        let slot = &mut self.nodes[host - self.base];
                        tcp.on_answer(
                            self.network,
                            &mut slot.rng,
                            now,
                            answer,
                            &mut slot.tcp,
                            &mut out,
                        );
                    }
                    // A frozen kernel takes the answer when it thaws.
                    HostKernel::Frozen(until) => {
                        out.push((until.max(now), TcpEvent::Answer(answer)));
                    }
                    // A crashed sender hears nothing any more.
                    HostKernel::Down | HostKernel::NoListener => {
                        let tcp = self.local.tcp.as_mut().expect("checked above");
                        tcp.stats.discarded += 1;
                    }
                }
                self.push_segments(host, &mut out);
                self.local.segments = out;
            }
        }
    }

    /// Moves the transport's scheduled events (scheduled by `source`) into the queues.
    fn push_segments(&mut self, source: usize, out: &mut Vec<(Time, TcpEvent<Payload>)>) {
        for (at, event) in out.drain(..) {
            self.schedule(source, at, EventKind::Segment(event));
        }
    }

    pub(super) fn transmit(&mut self, from: usize, dst: SocketAddr, envelope: Envelope, at: Time) {
        let now = self.now;
        let len = wire::encoded_len(&envelope) as u64;
        let traffic = &mut self.local.traffic;
        traffic.messages_sent += 1;
        traffic.bytes_sent += len;
        let kind = &mut traffic.by_kind[envelope.msg.kind_index()];
        kind.0 += 1;
        kind.1 += len;
        let Some(to) = self.common.index.get(&dst).copied() else {
            self.local.traffic.unroutable += 1;
            return;
        };
        let envelope = Box::new(envelope);
        if let Some(tcp) = self.local.tcp.as_mut() {
            let mut out = std::mem::take(&mut self.local.segments);
            let slot = &mut self.nodes[from - self.base];
            // A full send buffer refuses the message (counted by the transport).
            let _ = tcp.send(
                self.network,
                &mut slot.rng,
                (now, at),
                (from, to),
                &mut slot.tcp,
                (envelope, len as usize),
                &mut out,
            );
            self.push_segments(from, &mut out);
            self.local.segments = out;
            return;
        }
        let mut delays = std::mem::take(&mut self.local.delays);
        let sent = {
            let slot = &mut self.nodes[from - self.base];
            self.network.transmit(&mut slot.rng, from, to, &mut delays)
        };
        match sent {
            Ok(()) => {
                if let Some((&last, rest)) = delays.split_last() {
                    for &d in rest {
                        let copy = envelope.clone();
                        self.schedule(
                            from,
                            at + d,
                            EventKind::Deliver {
                                from,
                                to,
                                envelope: copy,
                            },
                        );
                    }
                    self.schedule(from, at + last, EventKind::Deliver { from, to, envelope });
                }
            }
            Err(crate::network::Drop::Lost) => self.local.traffic.lost += 1,
            Err(crate::network::Drop::Partitioned) => self.local.traffic.partitioned += 1,
        }
        self.local.delays = delays;
    }

    /// Node `i`'s shell probes `peer`'s host at `at`: a TCP connect answered by the
    /// peer's kernel. The SYN travels (drawn from the prober's stream); the target's
    /// kernel answers when it arrives ([`Ctx::probe_arrives`]); the result reaches the
    /// prober as an input after the round trip, or after [`HOST_PROBE_TIMEOUT`] without
    /// an answer.
    pub(super) fn host_probe(&mut self, i: usize, peer: SocketAddr, at: Time) {
        let sent = at.max(self.now);
        let epoch = self.r(i).id.epoch;
        let to = self.common.index.get(&peer).copied();
        let there = to.and_then(|to| {
            let slot = &mut self.nodes[i - self.base];
            self.network.packet(&mut slot.rng, i, to).ok()
        });
        match (to, there) {
            (Some(to), Some(there)) => self.schedule(
                i,
                sent + there,
                EventKind::ProbeSyn {
                    prober: i,
                    epoch,
                    peer,
                    to,
                    sent,
                },
            ),
            _ => self.schedule(
                i,
                sent + HOST_PROBE_TIMEOUT,
                EventKind::ProbeResult {
                    node: i,
                    epoch,
                    peer,
                    answered: false,
                },
            ),
        }
    }

    /// A probe's SYN reaches host `to`'s kernel now: it answers (a SYN-ACK, drawn from the
    /// target's stream) unless the host is down or frozen, or its stalled agent's accept
    /// queue is full.
    pub(super) fn probe_arrives(
        &mut self,
        prober: usize,
        epoch: u64,
        peer: SocketAddr,
        to: usize,
        sent: Time,
    ) {
        let now = self.now;
        let backlog = self.cfg().probe_backlog;
        let answer = 'answer: {
            if !self.is_alive(to) || self.r(to).host.frozen_until > now {
                break 'answer None;
            }
            let host = &mut self.n(to).host;
            if host.stalled_until > now {
                if host.accept_queue > backlog {
                    break 'answer None;
                }
                host.accept_queue += 1;
            }
            let slot = &mut self.nodes[to - self.base];
            self.network.packet(&mut slot.rng, to, prober).ok()
        };
        let rtt = answer.map(|back| (now - sent) + back);
        let (at, answered) = match rtt {
            Some(rtt) if rtt < HOST_PROBE_TIMEOUT => (sent + rtt, true),
            _ => (
                (sent + HOST_PROBE_TIMEOUT).max(now + self.network.min_one_way()),
                false,
            ),
        };
        self.schedule(
            to,
            at,
            EventKind::ProbeResult {
                node: prober,
                epoch,
                peer,
                answered,
            },
        );
    }
}
