//! The Mesos side of a lab: each host's agent reads a Mesos agent `/state` document from a
//! file (`minuteman agent --mesos-state-file`), written here.
//!
//! Invariants:
//! - [`agent_state`] yields a document the core's parser reads back into exactly the
//!   tasks' VIP labels (checked below), every task `TASK_RUNNING`.
//! - [`write_atomic`] replaces a file in one rename, so a polling agent never reads half a
//!   document.

use super::LabError;
use std::net::IpAddr;
use std::path::Path;

/// One task of a host's Mesos agent.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    /// The task's name (Marathon names every instance of an app alike): its DNS record
    /// is `NAME.marathon.mesos`.
    pub name: String,
    /// One entry per port: (protocol `tcp` or `udp`, port number, the values of its labels
    /// `VIP_0`, `VIP_1`, … such as `10.200.0.1:80` or `/web:80`).
    pub ports: Vec<(&'static str, u16, Vec<String>)>,
    /// A container IP: the port labels get `network-scope=container`, and the backends
    /// are this address (the container's port) instead of the agent's.
    pub container_ip: Option<IpAddr>,
}

/// An agent's `/state` document holding `tasks`, all running, in one Marathon framework.
pub fn agent_state(tasks: &[Task]) -> String {
    let tasks: Vec<serde_json::Value> = tasks.iter().map(task_json).collect();
    serde_json::json!({"frameworks": [{"name": "marathon", "executors": [{"tasks": tasks}]}]})
        .to_string()
}

fn task_json(t: &Task) -> serde_json::Value {
    let ports: Vec<serde_json::Value> = t
        .ports
        .iter()
        .map(|(proto, port, vips)| {
            let mut labels: Vec<serde_json::Value> = vips
                .iter()
                .enumerate()
                .map(|(k, v)| serde_json::json!({"key": format!("VIP_{k}"), "value": v}))
                .collect();
            if t.container_ip.is_some() {
                labels.push(serde_json::json!({"key": "network-scope", "value": "container"}));
            }
            serde_json::json!({"number": port, "protocol": proto, "labels": {"labels": labels}})
        })
        .collect();
    let mut task = serde_json::json!({
        "id": t.id, "name": t.name, "state": "TASK_RUNNING",
        "discovery": {"ports": {"ports": ports}},
    });
    if let Some(ip) = t.container_ip {
        task["statuses"] = serde_json::json!([{"state": "TASK_RUNNING",
            "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": ip.to_string()}]}]}}]);
    }
    task
}

/// Writes `text` to `path` through a temporary file beside it and a rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), LabError> {
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        LabError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::mesos::extract::ExtractOptions;
    use minuteman_core::mesos::inspect::inspect;

    #[test]
    fn the_core_reads_back_the_tasks_vips() {
        let agent: IpAddr = "10.77.0.2".parse().unwrap();
        let doc = agent_state(&[
            Task {
                id: "web-h2".into(),
                name: "web".into(),
                ports: vec![
                    ("tcp", 8080, vec!["10.200.0.1:80".into(), "/web:80".into()]),
                    ("udp", 8081, vec!["10.200.0.2:53".into()]),
                ],
                container_ip: None,
            },
            Task {
                id: "ctr".into(),
                name: "ctr".into(),
                ports: vec![("tcp", 9000, vec!["10.200.0.3:90".into()])],
                container_ip: Some("10.78.0.2".parse().unwrap()),
            },
        ]);
        let found = inspect(doc.as_bytes(), &ExtractOptions::with_agent_ip(agent)).unwrap();
        assert!(
            found.extracted.warnings.is_empty(),
            "{:?}",
            found.extracted.warnings
        );
        let vips: Vec<String> = found
            .extracted
            .vips
            .vips
            .iter()
            .map(|(vip, backends)| {
                let b: Vec<String> = backends
                    .iter()
                    .map(|b| format!("{}:{}@{}/{}", b.ip, b.port, b.agent, b.weight))
                    .collect();
                format!("{vip} -> {}", b.join(","))
            })
            .collect();
        assert_eq!(
            vips,
            [
                "tcp 10.200.0.1:80 -> 10.77.0.2:8080@10.77.0.2/1",
                "tcp 10.200.0.3:90 -> 10.78.0.2:9000@10.77.0.2/1",
                "tcp web.marathon:80 -> 10.77.0.2:8080@10.77.0.2/1",
                "udp 10.200.0.2:53 -> 10.77.0.2:8081@10.77.0.2/1",
            ]
        );
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("mm-lab-mesos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
