//! The agent's Prometheus metrics: what the shell counts itself ([`ShellMetrics`], shared
//! by every task through an `Arc`) and the core's counters and gauges, read from the node
//! at scrape time ([`CoreSnapshot`]) and rendered together by [`encode`].
//!
//! Invariants:
//! - Every counter only increases; every name carries the `minuteman_` prefix and a
//!   `_total` suffix for counters (prometheus-client adds it).
//! - Label values come from closed sets (`&'static str`), never from peer input, so a
//!   hostile peer cannot grow the label space.

use minuteman_core::counters::Counters;
use minuteman_core::wire::Message;
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label, `result` / `reason` / `kind`, from a closed set of values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Why {
    pub reason: &'static str,
}

impl Why {
    pub fn new(reason: &'static str) -> Why {
        Why { reason }
    }
}

/// The `kind` label of per-message-kind counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// The `key` label of verified frames.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Key {
    key: &'static str,
}

/// What the shell counts. Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct ShellMetrics {
    // Peers.
    pub frames_sent: Counter,
    pub bytes_sent: Counter,
    pub frames_received: Counter,
    pub bytes_received: Counter,
    /// Bytes of the frames handed to peer queues, by message kind.
    pub message_bytes_out: Family<Kind, Counter>,
    /// Frames dropped before sending, by reason (`queue_full`, `queue_bytes`, `connect_failed`,
    /// ...).
    pub send_drops: Family<Why, Counter>,
    /// Frames refused on receipt before the core saw them: `oversized` and `empty` (the
    /// connection is given up), `inbound_bytes` (read past, over the budget), `truncated`
    /// (the connection closed inside a frame), `idle` (a connection silent for
    /// `read_idle_timeout`, closed).
    pub receive_drops: Family<Why, Counter>,
    /// Outbound connection attempts, by result (`ok`, `refused`, `timeout`, `error`).
    pub connects: Family<Why, Counter>,
    /// Inbound connections accepted, and refused for being over the bound.
    pub accepts: Family<Why, Counter>,
    pub open_connections: Gauge,
    /// Host probes, by result (`answered`, `silent`, `dropped`).
    pub host_probes: Family<Why, Counter>,
    // Mesos.
    pub mesos_polls: Counter,
    /// Failed polls by reason (`http`, `status`, `parse`, `io`, `too_large`, `timeout`).
    pub mesos_poll_failures: Family<Why, Counter>,
    /// Polls whose VIP set differed from the last good one.
    pub mesos_changes: Counter,
    pub mesos_warnings: Counter,
    /// Sets the core refused (over the record bounds).
    pub mesos_rejected: Counter,
    // Kernel.
    /// Transactions, by result (`delta`, `full`, `failed`).
    pub kernel_syncs: Family<Why, Counter>,
    pub kernel_sync_seconds: Histogram,
    pub kernel_ops: Counter,
    /// Reconciles that found the table changed by someone else and restored it.
    pub kernel_restores: Counter,
    pub kernel_reconciles: Counter,
    pub kernel_services: Gauge,
    // State directory.
    pub state_writes: Family<Why, Counter>,
    // API.
    pub api_requests: Counter,
    /// Inputs dropped because the node's inbox was full, by kind.
    pub inbox_drops: Family<Why, Counter>,
    // DNS.
    /// Queries, by outcome (`answer`, `nodata`, `nxdomain`, `refused`, `formerr`, ...).
    pub dns_queries: Family<Why, Counter>,
    /// Relays to the upstream, by result (`ok`, `timeout`, `error`, `overload`).
    pub dns_forwards: Family<Why, Counter>,
}

impl Default for ShellMetrics {
    fn default() -> Self {
        ShellMetrics {
            frames_sent: Counter::default(),
            bytes_sent: Counter::default(),
            frames_received: Counter::default(),
            bytes_received: Counter::default(),
            message_bytes_out: Family::default(),
            send_drops: Family::default(),
            receive_drops: Family::default(),
            connects: Family::default(),
            accepts: Family::default(),
            open_connections: Gauge::default(),
            host_probes: Family::default(),
            mesos_polls: Counter::default(),
            mesos_poll_failures: Family::default(),
            mesos_changes: Counter::default(),
            mesos_warnings: Counter::default(),
            mesos_rejected: Counter::default(),
            kernel_syncs: Family::default(),
            // 0.5 ms .. ~4 s.
            kernel_sync_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            kernel_ops: Counter::default(),
            kernel_restores: Counter::default(),
            kernel_reconciles: Counter::default(),
            kernel_services: Gauge::default(),
            state_writes: Family::default(),
            api_requests: Counter::default(),
            inbox_drops: Family::default(),
            dns_queries: Family::default(),
            dns_forwards: Family::default(),
        }
    }
}

/// The core's view at scrape time, read by the node's owner task.
#[derive(Clone, Debug, Default)]
pub struct CoreSnapshot {
    pub counters: Counters,
    pub active_view: usize,
    pub passive_view: usize,
    pub reachable: usize,
    pub known: usize,
    pub stalled_neighbors: usize,
    pub desired_services: usize,
    pub local_backends: usize,
    pub epoch: u64,
    pub view_complete: bool,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    registry.register(name, help, ConstGauge::new(value));
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn register_shell(registry: &mut Registry, m: &ShellMetrics) {
    let r = registry;
    r.register(
        "peer_frames_sent",
        "Frames written to peers",
        m.frames_sent.clone(),
    );
    r.register(
        "peer_bytes_sent",
        "Bytes written to peers (with length prefixes)",
        m.bytes_sent.clone(),
    );
    r.register(
        "peer_frames_received",
        "Frames read from peers",
        m.frames_received.clone(),
    );
    r.register(
        "peer_bytes_received",
        "Bytes read from peers (with length prefixes)",
        m.bytes_received.clone(),
    );
    r.register(
        "message_bytes_out",
        "Bytes of the frames handed to peer queues, by message kind",
        m.message_bytes_out.clone(),
    );
    r.register(
        "peer_send_drops",
        "Frames dropped before sending, by reason",
        m.send_drops.clone(),
    );
    r.register(
        "peer_receive_drops",
        "Frames refused before decoding, by reason",
        m.receive_drops.clone(),
    );
    r.register(
        "peer_connects",
        "Outbound peer connection attempts, by result",
        m.connects.clone(),
    );
    r.register(
        "peer_accepts",
        "Inbound peer connections, by result",
        m.accepts.clone(),
    );
    r.register(
        "peer_open_connections",
        "Open peer connections, both directions",
        m.open_connections.clone(),
    );
    r.register(
        "host_probes",
        "Host probes (TCP connects to a peer port), by result",
        m.host_probes.clone(),
    );
    r.register(
        "mesos_polls",
        "Mesos state reads attempted",
        m.mesos_polls.clone(),
    );
    r.register(
        "mesos_poll_failures",
        "Mesos state reads that failed, by reason (the last good state is kept)",
        m.mesos_poll_failures.clone(),
    );
    r.register(
        "mesos_changes",
        "Mesos reads whose VIP set changed",
        m.mesos_changes.clone(),
    );
    r.register(
        "mesos_warnings",
        "Warnings from Mesos extraction (malformed labels, unknown agents)",
        m.mesos_warnings.clone(),
    );
    r.register(
        "mesos_rejected",
        "Local VIP sets the core refused as over the record bounds",
        m.mesos_rejected.clone(),
    );
    r.register(
        "dns_queries",
        "DNS queries, by outcome (answer, nodata, nxdomain, refused, formerr, notimp, truncated, forward, dropped_*)",
        m.dns_queries.clone(),
    );
    r.register(
        "dns_forwards",
        "DNS queries relayed to the upstream, by result",
        m.dns_forwards.clone(),
    );
    r.register(
        "kernel_syncs",
        "Data-plane transactions, by result",
        m.kernel_syncs.clone(),
    );
    r.register(
        "kernel_sync_seconds",
        "Duration of one data-plane transaction",
        m.kernel_sync_seconds.clone(),
    );
    r.register(
        "kernel_ops",
        "Kernel operations applied",
        m.kernel_ops.clone(),
    );
    r.register(
        "kernel_reconciles",
        "Periodic reconciles of the data plane against the kernel",
        m.kernel_reconciles.clone(),
    );
    r.register(
        "kernel_restores",
        "Reconciles that found the table changed by someone else and restored it",
        m.kernel_restores.clone(),
    );
    r.register(
        "kernel_services",
        "Services in the committed data-plane state",
        m.kernel_services.clone(),
    );
    r.register(
        "state_writes",
        "Writes of the state directory, by result",
        m.state_writes.clone(),
    );
    r.register(
        "api_requests",
        "HTTP API requests served",
        m.api_requests.clone(),
    );
    r.register(
        "inbox_drops",
        "Inputs dropped because the node's inbox was full, by kind",
        m.inbox_drops.clone(),
    );
}

fn register_core(r: &mut Registry, s: &CoreSnapshot) {
    let c = &s.counters;
    gauge(
        r,
        "active_view",
        "Active HyParView neighbours",
        clamp(s.active_view),
    );
    gauge(
        r,
        "passive_view",
        "Passive HyParView peers",
        clamp(s.passive_view),
    );
    gauge(
        r,
        "reachable_nodes",
        "Nodes reachable over the adjacency graph, self included",
        clamp(s.reachable),
    );
    gauge(r, "known_records", "Node records held", clamp(s.known));
    gauge(
        r,
        "stalled_neighbors",
        "Active neighbours whose agent is silent while their host answers",
        clamp(s.stalled_neighbors),
    );
    gauge(
        r,
        "desired_services",
        "Services in the desired kernel state",
        clamp(s.desired_services),
    );
    gauge(
        r,
        "local_backends",
        "VIP backends this host reports",
        clamp(s.local_backends),
    );
    gauge(
        r,
        "epoch",
        "This node's incarnation",
        i64::try_from(s.epoch).unwrap_or(i64::MAX),
    );
    gauge(
        r,
        "view_complete",
        "1 once this node has caught up with the cluster's records",
        i64::from(s.view_complete),
    );

    let (messages_in, messages_out) = (
        Family::<Kind, Counter>::default(),
        Family::<Kind, Counter>::default(),
    );
    for (i, kind) in Message::KIND_NAMES.iter().enumerate() {
        messages_in
            .get_or_create(&Kind { kind })
            .inc_by(c.messages_in[i]);
        messages_out
            .get_or_create(&Kind { kind })
            .inc_by(c.messages_out[i]);
    }
    r.register("messages_in", "Peer messages handled, by kind", messages_in);
    r.register(
        "messages_out",
        "Peer messages emitted, by kind",
        messages_out,
    );
    let bytes_in = Family::<Kind, Counter>::default();
    for (i, kind) in Message::KIND_NAMES.iter().enumerate() {
        bytes_in.get_or_create(&Kind { kind }).inc_by(c.bytes_in[i]);
    }
    r.register(
        "message_bytes_in",
        "Bytes of accepted peer frames, by message kind",
        bytes_in,
    );
    let d = &c.decode_errors;
    let rejected = Family::<Why, Counter>::default();
    for (reason, value) in [
        ("empty", d.empty),
        ("too_large", d.too_large),
        ("unknown_version", d.unknown_version),
        ("malformed", d.malformed),
        ("trailing_bytes", d.trailing_bytes),
        ("over_limit", d.over_limit),
        ("truncated", d.truncated),
        ("missing_mac", d.missing_mac),
        ("bad_mac", d.bad_mac),
    ] {
        rejected.get_or_create(&Why::new(reason)).inc_by(value);
    }
    r.register(
        "frames_rejected",
        "Frames refused by the core, by reason (MAC and decode failures)",
        rejected,
    );
    let v = &c.frames_verified;
    let verified = Family::<Key, Counter>::default();
    for (key, value) in [
        ("current", v.current),
        ("previous", v.previous),
        ("unchecked", v.unchecked),
    ] {
        verified.get_or_create(&Key { key }).inc_by(value);
    }
    r.register(
        "frames_verified",
        "Frames accepted, by the key that verified them",
        verified,
    );
    counter(
        r,
        "forged_sender",
        "Messages whose claimed sender is on another host than their connection",
        c.forged_sender,
    );
    counter(
        r,
        "stale_epoch_messages",
        "Messages from an older incarnation of a peer",
        c.stale_epoch_messages,
    );
    counter(
        r,
        "core_host_probes",
        "Host probes the core asked for",
        c.host_probes,
    );
    counter(
        r,
        "core_host_probes_answered",
        "Host probes the core heard answered",
        c.host_probes_answered,
    );
    counter(
        r,
        "agents_stalled",
        "Links that went stalled (agent silent, host answering)",
        c.agents_stalled,
    );
    counter(
        r,
        "connections_lost",
        "Peer connections the shell reported closed or failed",
        c.connections_lost,
    );
    counter(
        r,
        "incarnations_advanced",
        "Times this node became a newer incarnation",
        c.incarnations_advanced,
    );
    for (name, help, value) in c.named_counters() {
        counter(r, name, help, value);
    }
}

/// The same exposition in the classic Prometheus text format (0.0.4), for scrapers and
/// tools that do not ask for OpenMetrics (`promtool check metrics`, `curl`): counters'
/// `HELP` and `TYPE` lines carry the `_total` name of their samples, and there is no
/// `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 16);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The Prometheus text exposition of the shell's metrics and the core's snapshot.
pub fn encode(shell: &ShellMetrics, core: &CoreSnapshot) -> String {
    let mut registry = Registry::with_prefix("minuteman");
    register_shell(&mut registry, shell);
    register_core(&mut registry, core);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode_text(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let shell = ShellMetrics::default();
        shell.mesos_polls.inc_by(3);
        let text = encode(&shell, &CoreSnapshot::default());
        assert!(text.contains("# TYPE minuteman_mesos_polls counter"));
        let classic = to_prometheus_text(&text);
        assert!(classic.contains("# HELP minuteman_mesos_polls_total Mesos state reads attempted"));
        assert!(classic.contains("# TYPE minuteman_mesos_polls_total counter"));
        assert!(classic.contains("minuteman_mesos_polls_total 3"));
        assert!(classic.contains("# TYPE minuteman_active_view gauge"));
        assert!(!classic.contains("# EOF"));
        // Every sample of a counter has a HELP line of its own name.
        for line in classic.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .unwrap_or(name);
            assert!(
                classic.contains(&format!("# HELP {name} "))
                    || classic.contains(&format!("# HELP {family} ")),
                "no HELP for {name}"
            );
        }
    }
}
