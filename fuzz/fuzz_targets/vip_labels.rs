//! VIP labels and names on arbitrary text: the label parsers never panic, what they accept
//! is well-formed (a port of 1–65535, a named host that turns into DNS labels of
//! `[a-z0-9-]`, 1 to 63 bytes each), and a whole agent state carrying the text as a port
//! label and as a task label extracts without panicking, with every warning naming its
//! task.
//!
//! `cargo +nightly fuzz run vip_labels`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::mesos::labels::{
    dns_labels, named_vip, parse_task_vip, parse_vip, vip_port_index, VipHost,
};
use minuteman_core::mesos::{parse_and_extract, ExtractOptions};
use std::net::{IpAddr, Ipv4Addr};

fn well_formed_name(name: &str) {
    assert!(!name.is_empty());
    for label in name.split('.') {
        assert!(
            (1..=63).contains(&label.len()),
            "label {label:?} in {name:?}"
        );
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "label {label:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((host, port)) = parse_vip(&text) {
        assert_ne!(port, 0);
        if let VipHost::Name(host) = host {
            if let Some(name) = named_vip(&host, "marathon") {
                well_formed_name(&name);
                assert!(name.ends_with(".marathon"));
            }
        }
    }
    if let Ok((_, _, port)) = parse_task_vip(&text) {
        assert_ne!(port, 0);
    }
    let _ = vip_port_index(&text);
    if let Some(labels) = dns_labels(&text) {
        well_formed_name(&labels);
    }
    // The text as the value of a port label and of a task label, and as the task's name.
    let value = serde_json::Value::String(text.to_string());
    let doc = serde_json::json!({
        "frameworks": [{"id": "fw", "name": "marathon", "executors": [{"tasks": [{
            "id": "t1", "name": value, "framework_id": "fw", "state": "TASK_RUNNING",
            "labels": [{"key": "VIP_PORT0", "value": value}],
            "resources": {"ports": "[31000-31001]"},
            "discovery": {"ports": {"ports": [{"number": 8080, "protocol": "tcp",
                "labels": {"labels": [{"key": "VIP_0", "value": value}]}}]}}
        }]}]}]
    });
    let agent = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let bytes = serde_json::to_vec(&doc).expect("a JSON value serializes");
    let extracted = parse_and_extract(&bytes, &ExtractOptions::with_agent_ip(agent))
        .expect("a whole agent state parses");
    for warning in &extracted.warnings {
        assert!(warning.starts_with("task t1"), "{warning}");
    }
    for (name, endpoints) in &extracted.tasks.names {
        well_formed_name(&name.task);
        assert_eq!(name.framework, "marathon");
        assert!(!endpoints.is_empty());
    }
});
