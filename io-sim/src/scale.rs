//! The scale sweep: the membership evaluation at several cluster sizes, one after the
//! other, and what each size costs per node: messages and bytes per node per second (and
//! the bytes by message kind), simulated CPU per node, the simulator's memory and wall
//! time, with the evaluation's own results (false positives, detection, convergence) to
//! show the cost buys the same behaviour.
//!
//! `minuteman-sim scale` prints the table and writes `scale.md` and `scale.svg`.
//!
//! Memory is the simulator process's resident set (`/proc/self/status`), read with that
//! size's simulation still alive (`rss_end_mib`), after dropping it (`rss_after_drop_mib`)
//! and at its peak (`peak_rss_mib`). The kernel's peak (VmHWM) only grows over a process's
//! life; before each size it is reset to the current RSS (`/proc/self/clear_refs`, Linux
//! 4.0+), so the peak is that size's own. Where the reset is refused the peak is the
//! process's peak so far, and the report says so (`peak_is_per_run`).

use crate::membership::{MembershipReport, MembershipRun};
use crate::paper_files::{write_files, WriteError};
use crate::progress::Progress;
use crate::sim::Conditions;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parameters of one sweep.
#[derive(Clone, Debug)]
pub struct ScaleRun {
    /// Cluster sizes, run in this order.
    pub sizes: Vec<usize>,
    pub seed: u64,
    pub duration: Duration,
    pub crash_fraction: f64,
    /// The model (`--net`) and the stalls and freezes.
    pub conditions: Conditions,
}

impl Default for ScaleRun {
    fn default() -> Self {
        ScaleRun {
            sizes: vec![40, 200, 1000],
            seed: 1,
            duration: Duration::from_secs(30),
            crash_fraction: 0.125,
            conditions: Conditions::default(),
        }
    }
}

/// One size's figures. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    pub nodes: usize,
    pub crashed: usize,
    pub msgs_per_node_per_s: f64,
    pub bytes_per_node_per_s: f64,
    /// Once the join and the crash repair are over (see the membership report).
    pub settled_bytes_per_node_per_s: Option<f64>,
    pub bytes_per_node_per_s_by_kind: BTreeMap<String, f64>,
    /// The simulator's model of the agents' CPU time (not a measurement).
    pub cpu_ms_per_node_per_s: f64,
    /// Resident memory with this size's simulation still alive, MiB (`None`: no /proc).
    pub rss_end_mib: Option<f64>,
    /// Resident memory after the simulation was dropped, MiB.
    pub rss_after_drop_mib: Option<f64>,
    /// Peak resident memory: during this size's run when `peak_is_per_run`, else the
    /// process's peak so far.
    pub peak_rss_mib: Option<f64>,
    pub peak_is_per_run: bool,
    pub false_positives: usize,
    pub detection_p50_ms: Option<f64>,
    pub detection_p99_ms: Option<f64>,
    /// Survivors that never saw every crashed node unreachable.
    pub undetected: usize,
    pub converged_ms: Option<f64>,
    pub events: u64,
    pub wall_s: f64,
    /// CPU time the simulator process got during the run (user + system, 10 ms
    /// resolution; `None`: no /proc). On a shared machine steadier than the wall time.
    pub process_cpu_s: Option<f64>,
    pub trace_hash: String,
    /// The command that replays this size alone.
    pub replay: String,
}

/// The whole sweep. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    pub seed: u64,
    pub duration_ms: f64,
    pub crash_fraction: f64,
    pub command: String,
    pub rows: Vec<ScaleRow>,
}

impl ScaleRun {
    /// The command line that replays the sweep.
    pub fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        format!(
            "cargo run --release -p minuteman-sim -- scale --nodes {} --seed {} --duration {}ms \
             --crash-fraction {}{}",
            sizes.join(","),
            self.seed,
            self.duration.as_millis(),
            self.crash_fraction,
            self.conditions.replay_args()
        )
    }

    /// The membership run of one size.
    pub fn membership(&self, nodes: usize) -> MembershipRun {
        MembershipRun {
            nodes,
            crash_fraction: self.crash_fraction,
            duration: self.duration,
            seed: self.seed,
            conditions: self.conditions.clone(),
            ..MembershipRun::default()
        }
    }

    /// Runs every size in order; `progress(nodes)` gives each run its progress, if any.
    pub fn run(&self, mut progress: impl FnMut(usize) -> Option<Progress>) -> ScaleReport {
        let mut rows = Vec::with_capacity(self.sizes.len());
        for &nodes in &self.sizes {
            let peak_is_per_run = reset_peak_rss();
            let run = self.membership(nodes);
            let cpu_before = process_cpu();
            let (report, sim) = run.run_with(progress(nodes));
            let cpu = process_cpu()
                .zip(cpu_before)
                .map(|(after, before)| after - before);
            let events = sim.events_handled();
            let rss_end = read_status_kib("VmRSS:");
            let peak_alive = read_status_kib("VmHWM:");
            drop(sim);
            let rss_after_drop = read_status_kib("VmRSS:");
            // The kernel records the high-water mark lazily (when memory is unmapped, as
            // while dropping), and shows the larger of it and the current RSS.
            let peak = peak_alive.max(read_status_kib("VmHWM:"));
            rows.push(row(
                &report,
                events,
                cpu,
                [rss_end, rss_after_drop, peak],
                peak_is_per_run,
                run.replay_command(),
            ));
        }
        ScaleReport {
            seed: self.seed,
            duration_ms: self.duration.as_secs_f64() * 1e3,
            crash_fraction: self.crash_fraction,
            command: self.command(),
            rows,
        }
    }
}

fn row(
    r: &MembershipReport,
    events: u64,
    process_cpu_s: Option<f64>,
    [rss_end, rss_after_drop, peak]: [Option<u64>; 3],
    peak_is_per_run: bool,
    replay: String,
) -> ScaleRow {
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    ScaleRow {
        nodes: r.nodes,
        crashed: r.crashed,
        msgs_per_node_per_s: r.msgs_per_node_per_s,
        bytes_per_node_per_s: r.bytes_per_node_per_s,
        settled_bytes_per_node_per_s: r.settled_bytes_per_node_per_s,
        bytes_per_node_per_s_by_kind: r.bytes_per_node_per_s_by_kind.clone(),
        cpu_ms_per_node_per_s: r.cpu_ms_per_node_per_s,
        rss_end_mib: mib(rss_end),
        rss_after_drop_mib: mib(rss_after_drop),
        peak_rss_mib: mib(peak),
        peak_is_per_run,
        false_positives: r.false_positives,
        detection_p50_ms: r.detection_ms.map(|d| d.p50),
        detection_p99_ms: r.detection_ms.map(|d| d.p99),
        undetected: r.undetected,
        converged_ms: r.converged_ms,
        events,
        wall_s: r.wall_ms / 1e3,
        process_cpu_s,
        trace_hash: r.trace_hash.clone(),
        replay,
    }
}

/// Resets the process's peak resident set (VmHWM) to its current RSS; false when the
/// kernel refuses (not Linux, or no write access to `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU time of this process so far, in seconds (`/proc/self/stat`, in
/// USER_HZ = 100 ticks per second, the Linux ABI).
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is the
    // first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// A `kB` line of `/proc/self/status` (`VmRSS:`, `VmHWM:`), in KiB.
fn read_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Message kinds in the order of their bytes at the largest size (most first), those
/// never sent left out.
fn kinds_by_weight(rows: &[ScaleRow]) -> Vec<String> {
    let largest = rows.iter().max_by_key(|r| r.nodes);
    let weight = |k: &str| {
        largest
            .and_then(|r| r.bytes_per_node_per_s_by_kind.get(k))
            .copied()
            .unwrap_or(0.0)
    };
    let mut kinds: Vec<&String> = rows
        .iter()
        .flat_map(|r| r.bytes_per_node_per_s_by_kind.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    kinds.sort_by(|a, b| weight(b).total_cmp(&weight(a)).then(a.cmp(b)));
    kinds.into_iter().cloned().collect()
}

/// `1,234` style thousands for the table.
fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

impl ScaleReport {
    /// The tables as markdown (what `scale.md` holds and the command prints).
    pub fn render_markdown(&self) -> String {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        let mut out = String::new();
        out += &format!(
            "Membership evaluation per cluster size: seed {}, {} s simulated, {}% of the nodes \
             crash at 5 s.\n\n`{}`\n\n",
            self.seed,
            self.duration_ms / 1e3,
            self.crash_fraction * 100.0,
            self.command
        );
        out += "| nodes | msgs/node/s | bytes/node/s | settled bytes/node/s | CPU ms/node/s \
                | RSS end (MiB) | peak RSS (MiB) | false positives | detection p50 / p99 (ms) \
                | converged (ms) | events | wall (s) | sim CPU (s) |\n";
        out +=
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
                | ---: |\n";
        for r in &self.rows {
            let detection = match (r.detection_p50_ms, r.detection_p99_ms) {
                (Some(p50), Some(p99)) => format!("{p50:.0} / {p99:.0}"),
                _ if r.crashed == 0 => "no crash".to_string(),
                _ => format!("{} undetected", r.undetected),
            };
            out += &format!(
                "| {} | {:.0} | {} | {} | {:.2} | {} | {}{} | {} | {} | {} | {} | {:.1} | {} |\n",
                thousands(r.nodes as f64),
                r.msgs_per_node_per_s,
                thousands(r.bytes_per_node_per_s),
                r.settled_bytes_per_node_per_s
                    .map_or_else(|| "-".to_string(), thousands),
                r.cpu_ms_per_node_per_s,
                opt(r.rss_end_mib, 1),
                opt(r.peak_rss_mib, 1),
                if r.peak_is_per_run { "" } else { " (so far)" },
                r.false_positives,
                detection,
                opt(r.converged_ms, 0),
                crate::progress::si(r.events as f64),
                r.wall_s,
                opt(r.process_cpu_s, 1),
            );
        }
        let kinds = kinds_by_weight(&self.rows);
        out += "\nBytes per node per second by message kind:\n\n| nodes |";
        for k in &kinds {
            out += &format!(" {k} |");
        }
        out += "\n| ---: |";
        out += &" ---: |".repeat(kinds.len());
        out += "\n";
        for r in &self.rows {
            out += &format!("| {} |", thousands(r.nodes as f64));
            for k in &kinds {
                let b = r
                    .bytes_per_node_per_s_by_kind
                    .get(k)
                    .copied()
                    .unwrap_or(0.0);
                out += &format!(" {} |", thousands(b));
            }
            out += "\n";
        }
        let per_run = self.rows.iter().all(|r| r.peak_is_per_run);
        out += &format!(
            "\nPer-node figures are totals over the run divided by nodes × simulated seconds \
             (crashed nodes included, as `membership` reports them). CPU is the simulator's \
             model of the agents' CPU time (`io-sim/src/cpu.rs`), not a measurement. Memory is \
             the simulator process's resident set, all simulated nodes together: \"RSS end\" \
             with that size's simulation still alive, \"peak\" {}. Wall time is one run on a \
             shared machine (\"sim CPU\": the CPU time the simulator process got, steadier): \
             compare sizes, not machines.\n",
            if per_run {
                "the high-water mark (VmHWM) during that size's run (reset before it)"
            } else {
                "the process's high-water mark (VmHWM) so far (it only grows; it could not be reset)"
            }
        );
        out
    }

    /// The picture: cost against cluster size, log-log, one panel per figure.
    pub fn render_svg(&self) -> String {
        draw(self)
    }

    /// Writes `scale.md`, `scale.json` and `scale.svg` into `dir` (created if missing);
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
        std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_string_pretty(self).expect("the report serializes") + "\n";
        let files = [
            ("scale.md", self.render_markdown()),
            ("scale.json", json),
            ("scale.svg", self.render_svg()),
        ];
        write_files(dir, files)
    }
}

const TOTAL: &str = "#1f77b4";
const SETTLED: &str = "#ff7f0e";
const KIND_COLORS: [&str; 3] = ["#d62728", "#2ca02c", "#9467bd"];

/// One line of a panel.
struct Line {
    label: String,
    color: &'static str,
    width: f64,
    /// (nodes, value); values that are not positive are left out (log axis).
    points: Vec<(f64, f64)>,
}

/// One panel: a caption and its lines.
struct Panel {
    caption: String,
    lines: Vec<Line>,
}

/// The panels of the picture, from the rows.
fn panels(report: &ScaleReport) -> Vec<Panel> {
    let rows = &report.rows;
    let series = |label: &str, color, width, pick: &dyn Fn(&ScaleRow) -> Option<f64>| Line {
        label: label.to_string(),
        color,
        width,
        points: rows
            .iter()
            .filter_map(|r| Some((r.nodes as f64, pick(r)?)))
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .collect(),
    };
    let mut bytes = vec![
        series("all kinds", TOTAL, 2.5, &|r| Some(r.bytes_per_node_per_s)),
        series("all kinds, once settled", SETTLED, 2.5, &|r| {
            r.settled_bytes_per_node_per_s
        }),
    ];
    for (kind, color) in kinds_by_weight(rows).into_iter().zip(KIND_COLORS) {
        bytes.push(series(&kind, color, 1.5, &|r| {
            r.bytes_per_node_per_s_by_kind.get(&kind).copied()
        }));
    }
    let per_run = rows.iter().all(|r| r.peak_is_per_run);
    vec![
        Panel {
            caption: "bytes sent per node per second".into(),
            lines: bytes,
        },
        Panel {
            caption: "messages sent per node per second".into(),
            lines: vec![series("messages", TOTAL, 2.5, &|r| {
                Some(r.msgs_per_node_per_s)
            })],
        },
        Panel {
            caption: "simulated CPU, ms per node per second".into(),
            lines: vec![series("CPU (model)", TOTAL, 2.5, &|r| {
                Some(r.cpu_ms_per_node_per_s)
            })],
        },
        Panel {
            caption: if per_run {
                "simulator peak RSS per node, KiB".into()
            } else {
                "simulator peak RSS so far per node, KiB".into()
            },
            lines: vec![series("peak RSS / nodes", TOTAL, 2.5, &|r| {
                r.peak_rss_mib.map(|m| m * 1024.0 / r.nodes as f64)
            })],
        },
        Panel {
            caption: "detection of the crash, ms".into(),
            lines: vec![
                series("p99", TOTAL, 2.5, &|r| r.detection_p99_ms),
                series("p50", KIND_COLORS[0], 1.5, &|r| r.detection_p50_ms),
            ],
        },
        Panel {
            caption: "simulator time per node, ms".into(),
            lines: vec![
                series("wall / nodes", TOTAL, 2.5, &|r| {
                    Some(r.wall_s * 1e3 / r.nodes as f64)
                }),
                series("process CPU / nodes", KIND_COLORS[0], 1.5, &|r| {
                    r.process_cpu_s.map(|s| s * 1e3 / r.nodes as f64)
                }),
            ],
        },
    ]
}

/// A number for an axis or a point: at most three significant digits, k / M suffixes.
fn short(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= scale {
            return trim(format!("{:.*}", digits(v / scale), v / scale)) + suffix;
        }
    }
    trim(format!("{:.*}", digits(v), v))
}

/// Decimals that keep three significant digits (at most 3).
fn digits(v: f64) -> usize {
    if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    }
}

/// Ticks of a log axis over `[lo, hi]`: 1-2-5 steps, or decades when those are too many,
/// or every digit when they are too few.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |mantissas: &[f64]| -> Vec<f64> {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (k0..=k1)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let t = ticks(&[1.0, 2.0, 5.0]);
    if t.len() > 8 {
        return ticks(&[1.0]);
    }
    if t.len() < 3 {
        return ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    t
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The picture as a hand-written SVG document: a title and a grid of 3 × 2 panels, each
/// log-log with the swept sizes as the x ticks, every point labelled with its value.
fn draw(report: &ScaleReport) -> String {
    const W: f64 = 1200.0;
    const PANEL_W: f64 = 400.0;
    const PANEL_H: f64 = 340.0;
    const TOP: f64 = 40.0;
    let panels = panels(report);
    let rows_of_panels = panels.len().div_ceil(3);
    let h = TOP + PANEL_H * rows_of_panels as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" \
         viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\">\n\
         <rect width=\"{W}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    let title = format!(
        "cost per node against cluster size: membership evaluation, seed {}, {} s simulated, \
         {}% of the nodes crash",
        report.seed,
        report.duration_ms / 1e3,
        report.crash_fraction * 100.0
    );
    out += &format!(
        "<text x=\"{}\" y=\"26\" font-size=\"18\" text-anchor=\"middle\">{}</text>\n",
        W / 2.0,
        escape(&title)
    );
    let sizes: Vec<f64> = report.rows.iter().map(|r| r.nodes as f64).collect();
    let x_lo = sizes.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let x_hi = sizes.iter().copied().fold(1.0, f64::max);
    let (x_lo, x_hi) = (x_lo / 1.5, x_hi * 1.5);
    for (n, panel) in panels.iter().enumerate() {
        let (ox, oy) = ((n % 3) as f64 * PANEL_W, TOP + (n / 3) as f64 * PANEL_H);
        // The plot area inside the panel.
        let (left, right, top, bottom) = (
            ox + 70.0,
            ox + PANEL_W - 20.0,
            oy + 36.0,
            oy + PANEL_H - 50.0,
        );
        let values = || {
            panel
                .lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
        };
        let lo = values().fold(f64::INFINITY, f64::min);
        let hi = values().fold(0.0, f64::max);
        let (y_lo, y_hi) = if lo.is_finite() {
            (lo / 1.8, hi * 1.8)
        } else {
            (1.0, 10.0)
        };
        let px = |x: f64| left + (x / x_lo).ln() / (x_hi / x_lo).ln() * (right - left);
        let py = |y: f64| bottom - (y / y_lo).ln() / (y_hi / y_lo).ln() * (bottom - top);
        out += &format!(
            "<g>\n<text x=\"{}\" y=\"{}\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
            (left + right) / 2.0,
            oy + 22.0,
            escape(&panel.caption)
        );
        for y in log_ticks(y_lo, y_hi) {
            out += &format!(
                "<line x1=\"{left:.1}\" x2=\"{right:.1}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#e0e0e0\"/>\
                 <text x=\"{1:.1}\" y=\"{2:.1}\" font-size=\"11\" text-anchor=\"end\">{3}</text>\n",
                py(y),
                left - 6.0,
                py(y) + 4.0,
                short(y)
            );
        }
        for &x in &sizes {
            out += &format!(
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top:.1}\" y2=\"{bottom:.1}\" stroke=\"#e0e0e0\"/>\
                 <text x=\"{0:.1}\" y=\"{1:.1}\" font-size=\"11\" text-anchor=\"middle\">{2}</text>\n",
                px(x),
                bottom + 16.0,
                x
            );
        }
        out += &format!(
            "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">nodes (log)</text>\n",
            right - left,
            bottom - top,
            (left + right) / 2.0,
            bottom + 34.0
        );
        for (k, line) in panel.lines.iter().enumerate() {
            let path: Vec<String> = line
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" points=\"{}\"/>\n",
                line.color,
                line.width,
                path.join(" ")
            );
            for &(x, y) in &line.points {
                out += &format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                    px(x),
                    py(y),
                    line.color
                );
                // The first line's values are written beside its points (left of the
                // rightmost one, which would run past the frame).
                if k == 0 {
                    let (dx, anchor) = if x >= x_hi / 1.5 {
                        (-6.0, "end")
                    } else {
                        (5.0, "start")
                    };
                    out += &format!(
                        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{}\" \
                         text-anchor=\"{anchor}\">{}</text>",
                        px(x) + dx,
                        py(y) - 7.0,
                        line.color,
                        short(y)
                    );
                }
            }
            out += "\n";
            // Legend, top left inside the plot area.
            let ly = top + 14.0 + 16.0 * k as f64;
            out += &format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>\n",
                left + 8.0,
                left + 28.0,
                line.color,
                line.width,
                left + 34.0,
                ly + 4.0,
                escape(&line.label)
            );
        }
        out += "</g>\n";
    }
    out += "</svg>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separate() {
        assert_eq!(thousands(40.0), "40");
        assert_eq!(thousands(4_999.6), "5,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn axes_have_readable_ticks() {
        assert_eq!(short(4_644.0), "4.64k");
        assert_eq!(short(47_000.0), "47k");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(255.4), "255");
        assert_eq!(
            log_ticks(900.0, 60_000.0),
            vec![1e3, 2e3, 5e3, 1e4, 2e4, 5e4]
        );
        assert_eq!(log_ticks(150.0, 290.0), vec![200.0]);
        assert_eq!(log_ticks(110.0, 360.0), vec![200.0, 300.0]);
    }

    #[test]
    fn status_lines_parse() {
        // On Linux the process has a resident set; elsewhere the figures are absent.
        if Path::new("/proc/self/status").exists() {
            assert!(read_status_kib("VmRSS:").is_some_and(|k| k > 0));
            assert!(read_status_kib("VmHWM:").is_some_and(|k| k > 0));
            // Spin until the process's CPU time moves (10 ms ticks).
            let before = process_cpu().expect("/proc/self/stat");
            let start = std::time::Instant::now();
            while process_cpu().expect("/proc/self/stat") <= before {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "CPU time never moved"
                );
            }
        }
        assert_eq!(read_status_kib("NoSuchKey:"), None);
    }
}
