//! `minuteman mesos inspect` end to end: runs the built binary on the core's own fixtures
//! and on a shared recording (skipped with a message when `../shared/fixtures` is absent),
//! and checks the JSON shape, the table, the exit codes and the error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn minuteman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minuteman"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run minuteman")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    serde_json::from_str(&stdout(output)).expect("valid JSON")
}

#[test]
fn json_of_an_own_fixture() {
    let output = minuteman(&[
        "mesos",
        "inspect",
        "core/tests/fixtures/mesos/state/master-overlay.json",
        "--json",
    ]);
    let text = stdout(&output);
    assert_eq!(
        text.trim_end(),
        r#"{"vips":[{"protocol":"tcp","vip":"1.2.3.4:5000","port":5000,"backends":[{"agent":"10.0.1.248","ip":"9.0.1.130","port":80,"weight":1}]},{"protocol":"tcp","name":"bridge.marathon","port":8080,"backends":[{"agent":"10.0.1.248","ip":"10.0.1.248","port":28027,"weight":1}]}],"warnings":[]}"#
    );
    json(&output);
}

#[test]
fn json_ipv6_sorting_and_warnings() {
    let value = json(&minuteman(&[
        "mesos",
        "inspect",
        "--json",
        "core/tests/fixtures/mesos/state/agent-ipv6.json",
    ]));
    let vips = value["vips"].as_array().unwrap();
    let keys: Vec<String> = vips
        .iter()
        .map(|v| {
            v.get("vip")
                .or_else(|| v.get("name"))
                .and_then(|s| s.as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(keys, ["1.2.3.5:80", "[fd01:d::1]:80", "foo.marathon"]);
    assert!(vips[2].get("vip").is_none() && vips[2]["port"] == 80);
    let backends = vips[2]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    assert_eq!(backends[0]["ip"], "12.0.1.4");
    assert_eq!(backends[1]["ip"], "fd01::1:8000:4");
    let warnings = value["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().starts_with("task v4only.1: "));
}

#[test]
fn agent_ip_flag_overrides_the_agent_address() {
    let value = json(&minuteman(&[
        "mesos",
        "inspect",
        "core/tests/fixtures/mesos/state/agent-ip-vip.json",
        "--agent-ip",
        "192.168.7.7",
        "--json",
    ]));
    assert_eq!(value["vips"][0]["backends"][0]["agent"], "192.168.7.7");
    assert_eq!(value["vips"][0]["backends"][0]["ip"], "192.168.7.7");
}

#[test]
fn table_of_an_event_stream() {
    let output = minuteman(&[
        "mesos",
        "inspect",
        "core/tests/fixtures/mesos/operator-api/stream.json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!("inspect_stream_table", stdout(&output));
}

#[test]
fn table_of_malformed_labels() {
    let output = minuteman(&[
        "mesos",
        "inspect",
        "core/tests/fixtures/mesos/state/master-malformed.json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!("inspect_malformed_table", stdout(&output));
}

#[test]
fn json_of_a_shared_recording() {
    let shared = workspace().join("../shared/fixtures/mesos");
    if !shared.is_dir() {
        eprintln!("shared fixtures not found at {}", shared.display());
        return;
    }
    let file = shared.join("state/minuteman-state3.json");
    let output = minuteman(&["mesos", "inspect", "--json", file.to_str().unwrap()]);
    assert_eq!(
        stdout(&output).trim_end(),
        r#"{"vips":[{"protocol":"tcp","vip":"1.2.3.4:5000","port":5000,"backends":[{"agent":"10.0.0.243","ip":"10.0.0.243","port":26645,"weight":1}]}],"warnings":[]}"#
    );
    let file = shared.join("operator-api/hello-world.json");
    let value = json(&minuteman(&[
        "mesos",
        "inspect",
        "--json",
        file.to_str().unwrap(),
    ]));
    assert_eq!(value, serde_json::json!({"vips": [], "warnings": []}));
    let file = shared.join("operator-api/unhealthy.json");
    let value = json(&minuteman(&[
        "mesos",
        "inspect",
        "--json",
        file.to_str().unwrap(),
    ]));
    assert_eq!(value["vips"][0]["name"], "foobar.marathon");
    assert_eq!(value["vips"][0]["backends"][0]["weight"], 0);
}

#[test]
fn stdin_is_read_with_a_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_minuteman"))
        .args(["mesos", "inspect", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = br#"{"pid":"slave(1)@10.9.0.1:5051","frameworks":[{"id":"f","name":"marathon","executors":[{"tasks":[{"id":"t","state":"TASK_RUNNING","discovery":{"ports":{"ports":[{"number":8080,"protocol":"udp","labels":{"labels":[{"key":"VIP_0","value":"/dns:53"}]}}]}}}]}]}]}"#;
    child.stdin.take().unwrap().write_all(state).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        stdout(&output).trim_end(),
        r#"{"vips":[{"protocol":"udp","name":"dns.marathon","port":53,"backends":[{"agent":"10.9.0.1","ip":"10.9.0.1","port":8080,"weight":1}]}],"warnings":[]}"#
    );
}

#[test]
fn errors_exit_non_zero_with_a_clear_message() {
    let output = minuteman(&["mesos", "inspect", "does/not/exist.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: cannot read does/not/exist.json: "),
        "{}",
        stderr(&output)
    );

    let dir = std::env::temp_dir().join(format!("minuteman-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{\"frameworks\": [").unwrap();
    let output = minuteman(&["mesos", "inspect", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not JSON"), "{}", stderr(&output));

    std::fs::write(&bad, b"{\"hello\": \"world\"}").unwrap();
    let output = minuteman(&["mesos", "inspect", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not a Mesos document"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let output = minuteman(&["mesos", "inspect", "x.json", "--agent-ip", "not-an-ip"]);
    assert_eq!(output.status.code(), Some(2), "clap usage error");
}

#[test]
fn help_explains_every_flag() {
    let output = minuteman(&["mesos", "inspect", "--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for flag in ["--agent-ip", "--json", "--resolve", "<FILE>"] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn wire_decode_still_works() {
    let output = minuteman(&["wire", "decode", "does/not/exist"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read the frame"));
}
