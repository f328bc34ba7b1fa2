//! A host's process: its inbox, the inputs its core handles one at a time, the CPU time
//! they cost, the outputs they leave, and its kernel's `nft -f` transactions.
//!
//! Invariants: a process handles one input at a time, in arrival order, only while it is
//! alive, not stalled and not frozen; its outputs leave when the input's CPU time is spent;
//! it wakes for its timer at its core's newest deadline only.

use super::*;

impl Ctx<'_> {
    /// An input reaches node `i`'s process: handled now if the process is free, else
    /// queued behind the others.
    pub(super) fn accept_input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if self.r(i).host.inbox.is_empty() && self.is_alive(i) && self.ready_at(i) <= now {
            // Free, nothing queued: taken at once, as the inbox would hand it over (a
            // handled input never queues another on its own host).
            self.take_input(i, now, input);
            return;
        }
        self.n(i).host.inbox.push_back((now, input));
        self.pump(i);
    }

    /// When node `i`'s process can take its next input.
    fn ready_at(&self, i: usize) -> Time {
        let h = &self.r(i).host;
        h.busy_until.max(h.stalled_until).max(h.frozen_until)
    }

    /// Hands node `i`'s queued inputs to its core while the process is free.
    pub(super) fn pump(&mut self, i: usize) {
        loop {
            if !self.is_alive(i) || self.r(i).host.inbox.is_empty() {
                return;
            }
            let ready = self.ready_at(i);
            if ready > self.now {
                let slot = self.n(i);
                if !slot.host.wake_pending {
                    slot.host.wake_pending = true;
                    let boot = slot.host.boots;
                    self.schedule(i, ready, EventKind::Wake { node: i, boot });
                }
                return;
            }
            let (arrived, input) = self.n(i).host.inbox.pop_front().expect("not empty");
            self.take_input(i, arrived, input);
        }
    }

    /// Node `i`'s process takes `input`, which reached the host at `arrived`.
    fn take_input(&mut self, i: usize, arrived: Time, input: Input) {
        if self.common.traced.contains(&i) {
            let (kind, from) = match &input {
                Input::Boot => (InputKind::Boot, None),
                Input::Timer | Input::Probe { .. } => (InputKind::Timer, None),
                Input::Poll => (InputKind::Poll, None),
                Input::Message { from, .. } | Input::Frame { from, .. } => {
                    (InputKind::Message, Some(*from))
                }
            };
            let handled = self.now;
            self.local.handled.push(HandledInput {
                node: i,
                arrived,
                handled,
                kind,
                from,
            });
        }
        self.handle(i, input);
    }

    /// Node `i`'s core handles one input now; its outputs leave when the CPU time the
    /// input cost is spent.
    fn handle(&mut self, i: usize, input: Input) {
        let now = self.now;
        let per_input = self.cfg().cpu.per_input;
        let cost = match input {
            Input::Boot => per_input,
            Input::Timer => {
                let slot = self.n(i);
                slot.host.timer_queued = false;
                slot.node.as_mut().expect("alive").handle_timeout(now);
                per_input
            }
            Input::Poll => {
                self.n(i).host.poll_queued = false;
                self.poll(i)
            }
            Input::Probe { peer, answered } => {
                let core = self.n(i).node.as_mut().expect("alive");
                core.handle_host_probe(now, peer, answered);
                per_input
            }
            Input::Frame { from, frame } => {
                let core = self.n(i).node.as_mut().expect("alive");
                if core
                    .handle_frame(now, node_addr(from).ip(), &frame)
                    .is_err()
                {
                    self.local.traffic.rejected += 1;
                }
                self.local.traffic.delivered += 1;
                self.trace_event(i, 9, from as u64, i as u64, frame.len() as u64);
                per_input
            }
            Input::Message {
                from,
                envelope,
                len,
            } => {
                let to = i;
                self.n(to).tcp.consumed(from, len);
                if self.common.watch.contains(&to) || self.common.watch.contains(&from) {
                    eprintln!(
                        "{} {} -> {} {:?}",
                        now,
                        envelope.from,
                        self.r(to).id,
                        envelope.msg
                    );
                }
                let kind = envelope.msg.kind_index() as u64;
                let records = matches!(
                    envelope.msg,
                    Message::Records { .. } | Message::RecordsReply { .. }
                );
                if self.common.capture {
                    self.local.capture.push((from, to, (*envelope).clone()));
                }
                let remote = node_addr(from).ip();
                let accepted = if self.cfg().wire_roundtrip {
                    // The sender's keys are set between runs only: reading them is safe.
                    // The sender's keys: wire round trips run on one shard (see
                    // `Simulation::new`), with every host in this context.
                    let sender_auth = &self.r(from).auth;
                    let core = self.r(to).node.as_ref().expect("alive");
                    let frame = wire::encode_sealed(&envelope, &core.config().limits, sender_auth)
                        .expect("core emits frames within the limits");
                    let core = self.n(to).node.as_mut().expect("alive");
                    core.handle_frame(now, remote, &frame).is_ok()
                } else {
                    let core = self.n(to).node.as_mut().expect("alive");
                    core.handle_message(now, remote, *envelope).is_ok()
                };
                if !accepted {
                    self.local.traffic.rejected += 1;
                }
                self.local.traffic.delivered += 1;
                self.trace_event(to, 1, from as u64, to as u64, kind);
                let record_bytes = if records { len } else { 0 };
                per_input + CpuCosts::bytes(self.cfg().cpu.per_record_byte_ns, record_bytes)
            }
        };
        self.drain(i, cost);
    }

    pub(in crate::sim) fn boot(&mut self, i: usize) {
        let now = self.now;
        let id = self.r(i).id;
        let auth = self.r(i).auth.clone();
        let seed = self.n(i).rng.random();
        let mut config = Config::new(id, self.common.contacts.clone(), seed, auth);
        config.records.broadcast = self.cfg().broadcast;
        // Every node learns every host: room for all of them at once.
        config.records.expected_hosts = self.cfg().nodes;
        (self.cfg().tune)(&mut config);
        if let Some(horizon) = self.cfg().gc_horizon {
            config.records.gc_horizon = horizon;
        }
        let node = Node::new(config, now)
            .unwrap_or_else(|e| panic!("the simulated cluster's config is invalid: {e}"));
        let slot = self.n(i);
        slot.node = Some(node);
        slot.timer = None;
        let host = &mut slot.host;
        host.busy_until = now;
        host.inbox.clear();
        host.timer_queued = false;
        host.poll_queued = false;
        host.wake_pending = false;
        host.accept_queue = 0;
        host.kernel_running = false;
        host.kernel_waiting.clear();
        host.down_seen_by.clear();
        host.booted = true;
        host.boots += 1;
        self.trace_event(i, 2, i as u64, id.epoch, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_boot(i);
            let interval = world.cfg.poll_interval.as_nanos() as u64;
            let phase = Duration::from_nanos(self.n(i).rng.random_range(0..interval.max(1)));
            self.schedule(
                i,
                now + phase,
                EventKind::Poll {
                    node: i,
                    epoch: id.epoch,
                },
            );
        }
        self.handle(i, Input::Boot);
    }

    /// Node `i` reads its agent's `/state`, parses it with the core's Mesos parser and
    /// publishes the result; returns the CPU time the parse took.
    fn poll(&mut self, i: usize) -> Duration {
        let now = self.now;
        let Some(world) = self.world.as_ref() else {
            return Duration::ZERO;
        };
        let epoch = self.r(i).id.epoch;
        let interval = world.cfg.poll_interval;
        let doc = world.agent_state(i);
        let agent_ip = IpAddr::V4(world.agents[i].ip);
        self.schedule(i, now + interval, EventKind::Poll { node: i, epoch });
        self.trace_event(i, 4, i as u64, doc.len() as u64, 0);
        let parsed = crate::world::parse_agent_state(&doc);
        let core = self.nodes[i - self.base].node.as_mut().expect("alive");
        let world = self.world.as_mut().expect("checked above");
        match parsed {
            Ok((set, tasks, warnings)) => {
                world.counters.parse_warnings += warnings as u64;
                // The task records travel too, as the agent's do (for DNS).
                match core.set_local_report(now, vec![agent_ip], set.clone(), tasks) {
                    Ok(()) => world.on_polled(now, i, set),
                    Err(_) => world.counters.record_errors += 1,
                }
            }
            Err(_) => world.counters.parse_errors += 1,
        }
        self.cfg().cpu.per_input + CpuCosts::bytes(self.cfg().cpu.per_document_byte_ns, doc.len())
    }

    /// Drains node `i`'s outputs after an input that cost `cost` of CPU (before its
    /// outputs): packets into the network, events into the checks, kernel operations to
    /// the host's kernel. The process is busy until the input and its outputs are paid
    /// for; packets and operations leave then.
    fn drain(&mut self, i: usize, cost: Duration) {
        let mut outputs = std::mem::take(&mut self.local.outputs);
        {
            let Some(core) = self.n(i).node.as_mut() else {
                self.local.outputs = outputs;
                return;
            };
            loop {
                let output = core.poll_output();
                let last = matches!(output, Output::Timeout(_));
                outputs.push(output);
                if last {
                    break;
                }
            }
        }
        let mut cost = cost;
        if !self.common.instant_hosts {
            let cpu = &self.common.cfg.cpu;
            for output in &outputs {
                match output {
                    Output::Transmit(_) => cost += cpu.per_message_sent,
                    Output::Kernel(ops) => cost += cpu.refresh(ops.len()),
                    Output::Event(_)
                    | Output::Timeout(_)
                    | Output::CloseLink(_)
                    | Output::ProbeHost(_) => {}
                }
            }
        }
        self.local.cpu_ns += cost.as_nanos() as u64;
        let now = self.now;
        let release = now + cost;
        if release > self.r(i).host.busy_until {
            self.n(i).host.busy_until = release;
        }
        for output in outputs.drain(..) {
            match output {
                Output::Transmit(t) => self.transmit(i, t.dst, t.envelope, release),
                Output::Event(e) => self.observe(i, e),
                Output::Kernel(ops) => self.kernel_ops(i, ops, release),
                Output::CloseLink(peer) => {
                    if let (Some(tcp), Some(&to)) =
                        (self.local.tcp.as_mut(), self.common.index.get(&peer))
                    {
                        tcp.close(&mut self.nodes[i - self.base].tcp, to);
                    }
                }
                Output::ProbeHost(peer) => self.host_probe(i, peer, release),
                Output::Timeout(at) => {
                    if self.common.check_each_event && self.local.invariant_violation.is_none() {
                        if let Some(core) = self.r(i).node.as_ref() {
                            if let Err(e) = core.check_invariants() {
                                self.local.invariant_violation = Some((now, e));
                            }
                        }
                    }
                    // The process sleeps until its newest deadline, as the agent's loop
                    // does (it sleeps again after every input): a deadline that moved
                    // later leaves its event behind, which finds `timer` changed and
                    // wakes nobody.
                    let at = at.max(now);
                    let slot = self.n(i);
                    if slot.timer != Some(at) {
                        slot.timer = Some(at);
                        let epoch = slot.id.epoch;
                        self.schedule(i, at, EventKind::Timer { node: i, epoch });
                    }
                }
            }
        }
        self.local.outputs = outputs;
    }

    /// Node `i` emitted `ops` at `at`: into its kernel table now (ideal), or into the
    /// host's next `nft -f` transaction.
    fn kernel_ops(&mut self, i: usize, ops: Vec<Op>, at: Time) {
        let now = self.now;
        let immediate = self.cfg().kernel_apply.is_immediate();
        let Some(world) = self.world.as_mut() else {
            return;
        };
        if immediate {
            world.on_kernel_ops(now, i, &ops);
            return;
        }
        let host = &mut self.n(i).host;
        host.kernel_waiting.extend(ops);
        assert!(
            host.kernel_waiting.len() <= KERNEL_BACKLOG_LIMIT,
            "node {i}: over {KERNEL_BACKLOG_LIMIT} kernel operations wait for a transaction"
        );
        if !host.kernel_running {
            self.start_transaction(i, at);
        }
    }

    fn start_transaction(&mut self, i: usize, at: Time) {
        let slot = self.n(i);
        let ops = std::mem::take(&mut slot.host.kernel_waiting);
        if ops.is_empty() {
            return;
        }
        slot.host.kernel_running = true;
        let boot = slot.host.boots;
        let done = at + self.cfg().kernel_apply.cost(&ops);
        self.schedule(i, done, EventKind::KernelDone { node: i, boot, ops });
    }

    pub(super) fn kernel_done(&mut self, i: usize, boot: u64, ops: Vec<Op>) {
        let now = self.now;
        let slot = self.r(i);
        if slot.host.boots != boot || slot.node.is_none() {
            return;
        }
        if now < slot.host.frozen_until {
            let thaw = slot.host.frozen_until;
            self.schedule(i, thaw, EventKind::KernelDone { node: i, boot, ops });
            return;
        }
        self.trace_event(i, 8, i as u64, ops.len() as u64, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_kernel_ops(now, i, &ops);
        }
        self.n(i).host.kernel_running = false;
        self.start_transaction(i, now);
    }
}
