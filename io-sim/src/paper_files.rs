//! The paper run's files: `timeline.csv`, `report.json` and `paper.svg` (the seed's two
//! graphs: latency over time and failures over time, minuteman beside the baseline).
//!
//! Invariant: each file is written whole to a temporary name and renamed into place, so a
//! failed write (full disk, no permission) leaves no half-written file under the final
//! name; every failure is a typed error naming the path.

use crate::paper::{PaperOutcome, Timeline};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Why the files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

/// Writes the three files into `dir` (created if missing); returns their paths.
pub fn write(dir: &Path, outcome: &PaperOutcome) -> Result<Vec<PathBuf>, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let report =
        serde_json::to_string_pretty(&outcome.report).expect("the report serializes") + "\n";
    let r = &outcome.report;
    let (ours, theirs) = if r.crashed == 0 {
        ("no crash".to_string(), "no crash".to_string())
    } else {
        (
            r.kernel_repair_ms
                .map_or("not within the run".to_string(), |k| {
                    format!("p99 {:.0} ms", k.p99)
                }),
            r.baseline
                .kernel_repair_ms
                .map_or("not within the run".to_string(), |ms| {
                    format!("{:.1} s", ms / 1e3)
                }),
        )
    };
    let title = format!(
        "seed {}: {} nodes, {} tasks, {} crash at {:.0} s; dead backends out: {ours}, baseline {theirs}",
        r.seed,
        r.nodes,
        r.tasks,
        r.crashed,
        outcome.timeline.crash_ms / 1e3,
    );
    let svg = render_svg(&outcome.timeline, &title)?;
    let files = [
        ("timeline.csv", outcome.timeline.to_csv()),
        ("report.json", report),
        ("paper.svg", svg),
    ];
    write_files(dir, files)
}

/// Writes each `(name, content)` into `dir` with [`write_whole`]; the paths written.
pub(crate) fn write_files<const N: usize>(
    dir: &Path,
    files: [(&str, String); N],
) -> Result<Vec<PathBuf>, WriteError> {
    let mut written = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        write_whole(&path, content.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `content` to a temporary name beside `path`, then renames it into place.
pub(crate) fn write_whole(path: &Path, content: &[u8]) -> Result<(), WriteError> {
    let tmp = path.with_extension("tmp");
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, content).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        WriteError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

const OURS: RGBColor = RGBColor(31, 119, 180);
const THEIRS: RGBColor = RGBColor(214, 39, 40);
const CRASH: RGBColor = RGBColor(120, 120, 120);

/// The two panels as one SVG document.
pub fn render_svg(timeline: &Timeline, title: &str) -> Result<String, WriteError> {
    let mut svg = String::new();
    draw(&mut svg, timeline, title).map_err(|e| WriteError::Plot(e.to_string()))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    timeline: &Timeline,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (1000, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically(360);
    let secs = |t_ms: f64| t_ms / 1e3;
    let x_max = timeline.buckets.len() as f64 * crate::paper::BUCKET.as_secs_f64();
    let crash = secs(timeline.crash_ms);

    // Latency: p99 per bucket (log scale), p50 thinner.
    let worst = timeline
        .buckets
        .iter()
        .flat_map(|b| [b.minuteman.latency_p99_ms, b.baseline.latency_p99_ms])
        .flatten()
        .fold(1.0f64, f64::max);
    let y_top = worst * 2.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "latency per 100 ms (time to the answer, or to giving up)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (0.01f64..y_top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("test time (s)")
        .y_desc("latency (ms)")
        .draw()?;
    // Drawn in this order, so minuteman's lines lie on top of the baseline's.
    type Pick = fn(&crate::paper::Bucket) -> Option<f64>;
    let series: [(&str, Pick, RGBColor, u32); 4] = [
        ("baseline p99", |b| b.baseline.latency_p99_ms, THEIRS, 2),
        ("baseline p50", |b| b.baseline.latency_p50_ms, THEIRS, 1),
        ("minuteman p99", |b| b.minuteman.latency_p99_ms, OURS, 2),
        ("minuteman p50", |b| b.minuteman.latency_p50_ms, OURS, 1),
    ];
    for (label, pick, color, width) in series {
        // A bucket without requests (every thread waiting) breaks the line.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for b in &timeline.buckets {
            match pick(b) {
                Some(v) => segments
                    .last_mut()
                    .expect("never empty")
                    .push((secs(b.t_ms), v.max(0.1))),
                None => segments.push(Vec::new()),
            }
        }
        let style = color.stroke_width(width);
        let mut first = true;
        for segment in segments.into_iter().filter(|s| !s.is_empty()) {
            let drawn = chart.draw_series(LineSeries::new(segment, style))?;
            if std::mem::take(&mut first) {
                drawn
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            }
        }
    }
    chart
        .draw_series(LineSeries::new([(crash, 0.01), (crash, y_top)], CRASH))?
        .label("crash")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CRASH));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Failures per bucket.
    let most = timeline
        .buckets
        .iter()
        .map(|b| b.minuteman.failures.max(b.baseline.failures))
        .max()
        .unwrap_or(0);
    let y_top = (most + 1) as f64 * 1.5;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("failed requests per 100 ms", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_top)?;
    chart
        .configure_mesh()
        .x_desc("test time (s)")
        .y_desc("failures")
        .draw()?;
    type Count = fn(&crate::paper::Bucket) -> usize;
    let series: [(&str, Count, RGBColor); 2] = [
        ("baseline", |b| b.baseline.failures, THEIRS),
        ("minuteman", |b| b.minuteman.failures, OURS),
    ];
    for (label, pick, color) in series {
        let points = timeline
            .buckets
            .iter()
            .map(|b| (secs(b.t_ms), pick(b) as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new([(crash, 0.0), (crash, y_top)], CRASH))?
        .label("crash")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CRASH));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
