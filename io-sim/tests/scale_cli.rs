//! `minuteman-sim scale` end to end at tiny sizes: one table row per size on stdout and in
//! scale.md, the same figures in scale.json, an SVG with a panel per figure; and the
//! progress lines on stderr, absent with `--json` and `--quiet`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sim(args: &[&str], progress_now: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minuteman-sim"));
    cmd.args(args);
    if progress_now {
        // Progress from the first wall-clock check on, not after 2 s (a testing knob).
        cmd.env("MINUTEMAN_SIM_PROGRESS", "now");
    } else {
        cmd.env_remove("MINUTEMAN_SIM_PROGRESS");
    }
    cmd.output().expect("run minuteman-sim")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minuteman-scale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The rows of the first markdown table in `text`: its cells, header and rule left out.
fn first_table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with("| nodes"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn number(cell: &str) -> f64 {
    cell.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

#[test]
fn a_tiny_sweep_writes_one_row_per_size_and_a_picture() {
    let dir = scratch("sweep");
    let out = dir.join("nested");
    let output = sim(
        &[
            "scale",
            "--nodes",
            "10,20",
            "--duration",
            "20s",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
        true,
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(stdout.starts_with("seed             3\n"), "{stdout}");

    // The table: one row per size, in order, with sane figures.
    let rows = first_table(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, nodes) in rows.iter().zip([10.0, 20.0]) {
        assert_eq!(row.len(), 13, "{row:?}");
        assert_eq!(number(&row[0]), nodes);
        let msgs = number(&row[1]);
        let bytes = number(&row[2]);
        let settled = number(&row[3]);
        let cpu = number(&row[4]);
        assert!(msgs > 10.0 && msgs < 10_000.0, "msgs/node/s {msgs}");
        assert!(bytes > 10.0 * msgs, "bytes/node/s {bytes} for {msgs} msgs");
        assert!(settled > 0.0 && settled < 2.0 * bytes, "settled {settled}");
        assert!(cpu > 0.0 && cpu < 1000.0, "CPU ms/node/s {cpu}");
        let (rss_end, peak) = (number(&row[5]), number(&row[6]));
        assert!(
            rss_end > 0.0 && peak >= rss_end,
            "RSS {rss_end}, peak {peak}"
        );
        assert_eq!(number(&row[7]), 0.0, "false positives at {nodes} nodes");
        let (p50, p99) = row[8].split_once(" / ").expect("p50 / p99");
        let (p50, p99) = (number(p50), number(p99));
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 2_000.0, "{p50} / {p99}");
        assert!(number(&row[9]) > 0.0, "converged");
        assert!(number(&row[11]) >= 0.0, "wall");
        assert!(number(&row[12]) >= 0.0, "simulator CPU");
    }
    // The split by kind: a second table with the same rows, records among the kinds.
    let by_kind = stdout
        .split_once("by message kind")
        .expect("the by-kind table")
        .1;
    assert!(by_kind.contains("| records |") || by_kind.contains(" records |"));
    assert_eq!(first_table(by_kind).len(), 2);

    // scale.md is what was printed (after the seed line).
    let md = std::fs::read_to_string(out.join("scale.md")).unwrap();
    assert_eq!(md, stdout.split_once('\n').unwrap().1);
    assert!(
        md.contains("scale --nodes 10,20 --seed 3 --duration 20000ms"),
        "{md}"
    );

    // scale.json: the same rows, and the figures the table does not show.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scale.json")).unwrap()).unwrap();
    let jrows = json["rows"].as_array().unwrap();
    assert_eq!(jrows.len(), 2);
    assert_eq!(jrows[0]["nodes"], 10);
    assert_eq!(jrows[1]["nodes"], 20);
    for r in jrows {
        let kinds = r["bytes_per_node_per_s_by_kind"].as_object().unwrap();
        let sum: f64 = kinds.values().map(|v| v.as_f64().unwrap()).sum();
        let total = r["bytes_per_node_per_s"].as_f64().unwrap();
        assert!((sum - total).abs() < 1e-6 * total, "{sum} vs {total}");
        assert!(r["events"].as_u64().unwrap() > 1000);
        assert!(r["replay"].as_str().unwrap().contains("membership --nodes"));
        assert!(r["trace_hash"].as_str().unwrap().len() == 16);
    }

    // The picture: well-formed, six panels, a line and two points per series.
    let svg = std::fs::read_to_string(out.join("scale.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("scale.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for caption in [
        "bytes sent per node per second",
        "messages sent per node per second",
        "simulated CPU",
        "peak RSS",
        "detection of the crash",
        "simulator time per node",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(caption)),
            "no {caption:?} in {texts:?}"
        );
    }
    let polylines: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .collect();
    assert!(polylines.len() >= 6, "{} lines", polylines.len());
    for p in &polylines {
        assert_eq!(
            p.attribute("points").unwrap().split(' ').count(),
            2,
            "one point per size"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Progress went to stderr, labelled by size, one line at a time (not a terminal).
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("[sim ")).collect();
    assert!(
        progress.iter().any(|l| l.starts_with("[sim 10 nodes] t="))
            && progress.iter().any(|l| l.starts_with("[sim 20 nodes] t=")),
        "{stderr}"
    );
    assert!(
        progress.iter().any(|l| l.contains("t=20.0s/20s simulated")),
        "a last line at the end of each run: {stderr}"
    );
    assert!(!stderr.contains('\r'));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_and_quiet_print_no_progress_and_the_same_runs() {
    let dir = scratch("quiet");
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |name: &str, flag: Option<&str>| {
        let out = out(name);
        let mut args = vec!["scale", "--nodes", "10", "--duration", "6s", "--out", &out];
        args.extend(flag);
        sim(&args, true)
    };
    let json = run("json", Some("--json"));
    assert!(json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(report["rows"].as_array().unwrap().len(), 1);
    let stderr = String::from_utf8_lossy(&json.stderr);
    assert!(!stderr.contains("[sim"), "{stderr}");

    let quiet = run("quiet", Some("--quiet"));
    assert!(quiet.status.success());
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("[sim"), "{stderr}");
    let text = String::from_utf8(quiet.stdout).unwrap();
    assert_eq!(first_table(&text).len(), 1);

    // The same seed gives the same run whether progress is printed or not.
    let loud = run("loud", None);
    assert!(String::from_utf8_lossy(&loud.stderr).contains("[sim 10 nodes]"));
    let h = |name: &str| {
        let file = std::fs::read_to_string(dir.join(name).join("scale.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&file).unwrap();
        v["rows"][0]["trace_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(h("loud"), h("quiet"));
    assert_eq!(h("loud"), h("json"));
    assert_eq!(h("loud"), report["rows"][0]["trace_hash"].as_str().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_sizes_are_clear_errors() {
    for nodes in ["0", "10,0", "ten"] {
        let output = sim(&["scale", "--nodes", nodes, "--quiet"], false);
        assert_eq!(output.status.code(), Some(2), "--nodes {nodes}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--nodes"),
            "--nodes {nodes}"
        );
    }
}
