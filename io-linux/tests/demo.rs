//! `minuteman demo --once` as a user runs it (root, real namespaces): it exits 0, prints
//! the failover line and leaves no `mmdemo*` namespace behind. Needs root and `ip` (and
//! `nft` for the nftables run); skipped with the reason otherwise, mandatory in `.ci/run`.
//!
//! The two runs share the namespace names, so they take turns.

use minuteman::lab::net::{belongs_to, list_namespaces, remove_leftovers};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `minuteman demo --once ARGS` (killed after 3 minutes); its exit success, stdout and
/// stderr, and the `mmdemo` namespaces it left (removed before returning).
fn demo_once(args: &[&str]) -> (bool, String, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minuteman"))
        .args(["demo", "--once"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("minuteman runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let left: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| belongs_to("mmdemo", ns))
        .collect();
    remove_leftovers("mmdemo").unwrap();
    let ok = status.is_some_and(|s| s.success());
    if status.is_none() {
        eprintln!("the demo did not finish within 180 s");
    }
    (ok, out, err, left)
}

fn check(args: &[&str]) -> String {
    let (ok, out, err, left) = demo_once(args);
    assert!(ok, "minuteman demo --once {args:?} failed:\n{out}\n{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("failover: h3 out of h1's API after ")),
        "no failover line:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("back: h3 in every host's API after ")),
        "{out}"
    );
    assert!(
        left.is_empty(),
        "namespaces left behind: {left:?}\n{out}\n{err}"
    );
    out
}

#[test]
fn the_demo_runs_once_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !minuteman::lab::root_suite_ready("demo", &["ip", "nft"]) {
        return;
    }
    let out = check(&[]);
    assert!(out.contains("out of h1's kernel table after"), "{out}");
    // Five tallies (30 HTTP, 10 UDP, 10 through the named VIP; 30 after the failure, 30
    // after the return), none with a failure; the 30-request ones reach every live host
    // (a host missing from 30 random picks out of 3 has odds of 5 in a million).
    let tallies: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  h") && l.contains(" ×"))
        .collect();
    assert_eq!(tallies.len(), 5, "{out}");
    for tally in &tallies {
        assert!(!tally.contains("failed"), "{tally}\n{out}");
    }
    for (k, live) in [(0, 3), (3, 2), (4, 3)] {
        for i in 1..=3 {
            let named = tallies[k].contains(&format!("h{i} ×"));
            assert_eq!(named, i <= live, "tally {k}: {}\n{out}", tallies[k]);
        }
    }
    eprintln!("{out}");
}

#[test]
fn the_demo_runs_without_a_data_plane() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !minuteman::lab::root_suite_ready("demo (--dataplane none)", &["ip"]) {
        return;
    }
    let out = check(&["--dataplane", "none"]);
    assert!(
        out.contains("no kernel table with --dataplane none"),
        "{out}"
    );
}
