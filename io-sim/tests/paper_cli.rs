//! `minuteman-sim paper` end to end: the built binary, its JSON keys, the three files it
//! writes with `--out` (a CSV with one row per 100 ms, the same report as JSON, an SVG
//! that parses as XML with both graphs), and its errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minuteman-sim"))
        .args(args)
        .output()
        .expect("run minuteman-sim")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minuteman-paper-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn json_has_the_issue_keys_and_out_writes_three_files() {
    let dir = scratch("out");
    let out = dir.join("nested");
    let output = sim(&[
        "paper",
        "--seed",
        "4",
        "--duration",
        "10s",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    for key in [
        "seed",
        "nodes",
        "tasks",
        "crashed",
        "detection_ms",
        "kernel_repair_ms",
        "repair_ms",
        "requests",
        "latency_ms",
        "false_positives",
        "baseline",
        "violations",
        "trace_hash",
        "wall_ms",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    for key in ["p50", "p99", "max"] {
        assert!(report["detection_ms"][key].is_f64(), "detection_ms.{key}");
        assert!(
            report["kernel_repair_ms"][key].is_f64(),
            "kernel_repair_ms.{key}"
        );
    }
    assert!(report["kernel_repair_reason"].is_null());
    assert_eq!(report["survivors"], 35);
    for key in ["total", "failed", "failed_after_repair", "sent_to_dead"] {
        assert!(report["requests"][key].is_u64(), "requests.{key}");
    }
    for key in ["p50", "p99"] {
        assert!(report["latency_ms"][key].is_f64(), "latency_ms.{key}");
    }
    // On seed 4 ten requests fail on dead backends before the repair.
    assert!(report["repair_ms"].is_f64());
    assert_eq!(report["false_positives"], 0);
    let baseline = &report["baseline"];
    assert!(baseline["failed"].is_u64());
    assert!(baseline["repair_ms"].is_f64());
    // 10 s is far too short for Mesos to drop the dead agents: null, and why.
    assert!(baseline["kernel_repair_ms"].is_null(), "{baseline}");
    let reason = baseline["kernel_repair_reason"].as_str().unwrap();
    assert!(reason.contains("run ended at 10 s"), "{reason}");
    assert!(baseline["list_repair_ms"]["min"].as_f64().unwrap() >= 75_000.0);
    assert_eq!(baseline["config"]["failure_threshold"], 5);
    assert_eq!(baseline["config"]["agent_ping_timeout"], 15_000.0);
    assert_eq!(baseline["config"]["max_agent_ping_timeouts"], 5);
    assert_eq!(report["seed"], 4);
    assert_eq!(report["crashed"], 5);

    // The CSV: a header and one row per 100 ms of the 10 s test.
    let csv = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "t_ms,requests,failures,latency_p50_ms,latency_p99_ms,baseline_requests,\
         baseline_failures,baseline_latency_p50_ms,baseline_latency_p99_ms"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|r| r.len() == 9));
    let requests: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    let failures: u64 = rows.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(requests, report["requests"]["total"].as_u64().unwrap());
    assert_eq!(failures, report["requests"]["failed"].as_u64().unwrap());

    // report.json is the printed report.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(file["trace_hash"], report["trace_hash"]);
    assert_eq!(file["requests"], report["requests"]);

    // The SVG parses, and has both graphs' captions and a line per series.
    let svg = std::fs::read_to_string(out.join("paper.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("paper.svg is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for caption in [
        "latency per 100 ms",
        "failed requests per 100 ms",
        "baseline p99",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(caption)),
            "no text {caption:?} in the plot"
        );
    }
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
        .count();
    assert!(lines > 10, "only {lines} lines drawn");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_table_prints_the_seed_first_and_the_replay_last() {
    let output = sim(&["paper", "--seed", "2", "--duration", "6s"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("seed             2\n"), "{text}");
    assert!(text.contains("kernel repair    p50 "), "{text}");
    assert!(text.contains("baseline (pre-Lashup)"), "{text}");
    // On seed 2 no request of minuteman's fails: that is not a 0 ms repair.
    let last_failed = text
        .lines()
        .find(|l| l.starts_with("last failed request"))
        .expect("a last-failed-request row");
    assert!(last_failed.contains("none failed"), "{last_failed}");
    assert!(
        text.contains(
            "baseline repair  none: still sending to dead backends when the run ended at 6 s"
        ),
        "{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("replay           cargo run --release -p minuteman-sim -- paper --seed 2"),
        "{last}"
    );
}

#[test]
fn bad_arguments_and_an_unwritable_out_dir_are_clear_errors() {
    let output = sim(&["paper", "--crash-fraction", "1.5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--crash-fraction"));

    // A file where the directory should be.
    let dir = scratch("blocked");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let output = sim(&[
        "paper",
        "--duration",
        "6s",
        "--json",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write") && stderr.contains("not-a-dir"),
        "{stderr}"
    );
    // The report was still printed: the run is not lost.
    serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("report printed");
    std::fs::remove_dir_all(&dir).unwrap();
}
