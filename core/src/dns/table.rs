//! What the agent's DNS answers from: the named VIPs whose address the local kernel holds,
//! by full name (`web.marathon.l4lb.thisdcos.directory`), and, in a second zone, the
//! cluster's running tasks in the style of Mesos-DNS (`web.marathon.mesos`).
//!
//! Task records, for each task name `TASK.FRAMEWORK` of the [`crate::tasks`] directory:
//! - `TASK.FRAMEWORK.ZONE` `A`/`AAAA`: the address of every running instance;
//! - `_TASK._PROTO.FRAMEWORK.ZONE` `SRV` (`PROTO` `tcp` or `udp`): one per instance port,
//!   priority 0, weight 1, with the target `IP.TASK.FRAMEWORK.ZONE` (`IP` the address with
//!   `-` for `.` and `:`, IPv6 written out in full: `fd01-0-0-0-0-0-0-5`), whose `A`/`AAAA`
//!   is that one address, so a client pairs each port with the address it is at.
//!
//! Invariants:
//! - A table is immutable; a new one is built whenever the names, the task records or the
//!   committed kernel state change, and swapped in whole, so a query never sees half an
//!   update.
//! - A named VIP is in the table only while the local kernel holds a service at its
//!   address: it appears once the kernel has its VIP and disappears with it (per address
//!   family).
//! - Names are lower case without the trailing dot; lookups lower-case the question.
//!   Names over 253 characters (not expressible in DNS) are left out.
//! - Every entry's lists are sorted without repeats; the map is only looked up, never
//!   iterated, so its order reaches no output.

use crate::kernel::KernelState;
use crate::tasks::{TaskEndpoint, TaskName};
use crate::vip::Protocol;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The default zone of named VIPs, as dcos-dns served it.
pub const DEFAULT_ZONE: &str = "l4lb.thisdcos.directory";
/// The default zone of task records, as Mesos-DNS served it.
pub const DEFAULT_TASKS_ZONE: &str = "mesos";
/// The longest name DNS can carry (without the trailing dot).
const MAX_NAME: usize = 253;

/// One `SRV` record's port and target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Srv {
    pub port: u16,
    pub target: String,
}

/// What one name answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    pub srv: Vec<Srv>,
}

impl Entry {
    fn push_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(ip) => self.v4.push(ip),
            IpAddr::V6(ip) => self.v6.push(ip),
        }
    }

    fn normalize(&mut self) {
        self.v4.sort_unstable();
        self.v4.dedup();
        self.v6.sort_unstable();
        self.v6.dedup();
        self.srv.sort_unstable();
        self.srv.dedup();
    }
}

/// The names of the tasks zone, built from the cluster's task records. Built once per
/// change of the records and shared by the tables built from it (a table is rebuilt on
/// every kernel commit; its task part is not).
#[derive(Clone, Debug, Default)]
pub struct TaskZone {
    zone: String,
    names: HashMap<String, Entry>,
}

impl TaskZone {
    /// The zone `zone` holding `tasks` (the cluster's merged task records).
    pub fn build(zone: &str, tasks: &BTreeMap<TaskName, Vec<TaskEndpoint>>) -> TaskZone {
        let zone = normalize_zone(zone);
        let mut names: HashMap<String, Entry> = HashMap::new();
        fn entry<'m>(names: &'m mut HashMap<String, Entry>, name: &str) -> &'m mut Entry {
            names.entry(name.to_owned()).or_default()
        }
        for (name, endpoints) in tasks {
            let (task, framework) = (&name.task, &name.framework);
            let base = format!("{task}.{framework}.{zone}");
            for endpoint in endpoints {
                match *endpoint {
                    TaskEndpoint::Address(ip) => entry(&mut names, &base).push_ip(ip),
                    TaskEndpoint::Port { protocol, ip, port } => {
                        let proto = match protocol {
                            Protocol::Tcp => "tcp",
                            Protocol::Udp => "udp",
                        };
                        let target = format!("{}.{base}", ip_label(ip));
                        if target.len() > MAX_NAME {
                            continue;
                        }
                        entry(&mut names, &target).push_ip(ip);
                        let srv = format!("_{task}._{proto}.{framework}.{zone}");
                        entry(&mut names, &srv).srv.push(Srv { port, target });
                    }
                }
            }
        }
        names.retain(|name, _| name.len() <= MAX_NAME);
        for entry in names.values_mut() {
            entry.normalize();
        }
        TaskZone { zone, names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The names of the VIP zone and, when enabled, the tasks zone.
#[derive(Clone, Debug, Default)]
pub struct DnsTable {
    zone: String,
    tasks: Option<Arc<TaskZone>>,
    names: HashMap<String, Entry>,
    /// Counts the tables built (the SOA serial).
    serial: u32,
}

/// `zone` lower-cased, without surrounding dots.
pub fn normalize_zone(zone: &str) -> String {
    zone.trim_matches('.').to_ascii_lowercase()
}

/// Whether `name` is `zone` or inside it.
fn within(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// `ip` as one DNS label: `10-0-0-5`, `fd01-0-0-0-0-0-0-5`.
pub fn ip_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join("-"),
    }
}

impl DnsTable {
    /// The table of `zone` for `names` (name under the zone, e.g. `web.marathon`, with its
    /// assigned addresses), keeping the addresses `kernel` holds a service at.
    pub fn build<'a>(
        zone: &str,
        names: impl IntoIterator<Item = (&'a str, Option<Ipv4Addr>, Option<Ipv6Addr>)>,
        kernel: &KernelState,
        serial: u32,
    ) -> DnsTable {
        let zone = normalize_zone(zone);
        let held: BTreeSet<IpAddr> = kernel.services.keys().map(|s| s.addr.ip()).collect();
        let mut table = HashMap::new();
        for (name, v4, v6) in names {
            let entry = Entry {
                v4: v4
                    .filter(|ip| held.contains(&IpAddr::V4(*ip)))
                    .into_iter()
                    .collect(),
                v6: v6
                    .filter(|ip| held.contains(&IpAddr::V6(*ip)))
                    .into_iter()
                    .collect(),
                srv: Vec::new(),
            };
            let full = format!("{}.{zone}", name.to_ascii_lowercase());
            if (!entry.v4.is_empty() || !entry.v6.is_empty()) && full.len() <= MAX_NAME {
                table.insert(full, entry);
            }
        }
        DnsTable {
            zone,
            tasks: None,
            names: table,
            serial,
        }
    }

    /// This table with the tasks zone `zone` holding `tasks` (the cluster's merged task
    /// records). A tasks zone equal to, or inside or around, the VIP zone is refused by
    /// the configuration, not here: the VIP zone is then simply matched first.
    pub fn with_tasks(self, zone: &str, tasks: &BTreeMap<TaskName, Vec<TaskEndpoint>>) -> DnsTable {
        self.with_task_zone(Arc::new(TaskZone::build(zone, tasks)))
    }

    /// This table with a tasks zone already built.
    pub fn with_task_zone(mut self, tasks: Arc<TaskZone>) -> DnsTable {
        self.tasks = Some(tasks);
        self
    }

    /// An empty table of `zone`.
    pub fn empty(zone: &str) -> DnsTable {
        DnsTable::build(zone, std::iter::empty(), &KernelState::default(), 0)
    }

    /// The VIP zone, lower case, without dots at either end.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The tasks zone, if task records are served.
    pub fn tasks_zone(&self) -> Option<&str> {
        self.tasks.as_ref().map(|t| t.zone.as_str())
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The zone `name` (lower case, no trailing dot) is in, or is: the VIP zone first,
    /// then the tasks zone.
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        if within(name, &self.zone) {
            return Some(&self.zone);
        }
        self.tasks_zone().filter(|z| within(name, z))
    }

    /// Whether `name` (lower case, no trailing dot) is a zone or inside one.
    pub fn in_zone(&self, name: &str) -> bool {
        self.zone_of(name).is_some()
    }

    /// What `name` (lower case, no trailing dot) answers.
    pub fn lookup(&self, name: &str) -> Option<&Entry> {
        self.names
            .get(name)
            .or_else(|| self.tasks.as_ref().and_then(|t| t.names.get(name)))
    }

    /// Names served, in both zones.
    pub fn len(&self) -> usize {
        self.names.len() + self.tasks.as_ref().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Service;
    use crate::Protocol;
    use std::sync::Arc;

    #[test]
    fn a_name_is_served_only_while_the_kernel_holds_its_address() {
        let v4: Ipv4Addr = "11.1.2.3".parse().unwrap();
        let v6: Ipv6Addr = "fd01:c::7".parse().unwrap();
        let names = [
            ("web.marathon", Some(v4), Some(v6)),
            ("db.marathon", Some("11.9.9.9".parse().unwrap()), None),
        ];
        let mut kernel = KernelState::default();
        let table = DnsTable::build(".L4LB.thisdcos.directory.", names, &kernel, 1);
        assert_eq!(table.zone(), "l4lb.thisdcos.directory");
        assert!(table.is_empty(), "nothing in the kernel yet");
        kernel.services.insert(
            Service::new(Protocol::Tcp, std::net::SocketAddr::new(IpAddr::V4(v4), 80)),
            Arc::default(),
        );
        let table = DnsTable::build(DEFAULT_ZONE, names, &kernel, 2);
        assert_eq!(
            table.lookup("web.marathon.l4lb.thisdcos.directory"),
            Some(&Entry {
                v4: vec![v4],
                ..Entry::default()
            })
        );
        assert_eq!(table.lookup("db.marathon.l4lb.thisdcos.directory"), None);
        assert!(table.in_zone("l4lb.thisdcos.directory"));
        assert!(table.in_zone("x.l4lb.thisdcos.directory"));
        assert!(!table.in_zone("xl4lb.thisdcos.directory"));
        assert!(!table.in_zone("thisdcos.directory"));
    }

    #[test]
    fn address_labels_are_one_label_each() {
        assert_eq!(ip_label("10.0.0.5".parse().unwrap()), "10-0-0-5");
        assert_eq!(ip_label("fd01::5".parse().unwrap()), "fd01-0-0-0-0-0-0-5");
    }
}
