//! Task records, in the style of Mesos-DNS: the running tasks each host reports, by name,
//! with the addresses and ports they answer on; and the directory of every host's tasks
//! that the agent's DNS serves (`TASK.FRAMEWORK.mesos`, `_TASK._tcp.FRAMEWORK.mesos`).
//!
//! A [`TaskSet`] is one host's part: for every [`TaskName`] (the task's and its framework's
//! names, each turned into DNS labels) the [`TaskEndpoints`] of its running instances on
//! that host. It travels in the host's record beside the VIP backends, versioned with them
//! (`services_seq`) and by the same delta scheme: a delta lists every name whose endpoints
//! changed, with its new endpoints (none: the name is gone from that host).
//!
//! The [`TaskDirectory`] holds every host's set and whether the host is reachable, and
//! merges them by name with the rule the VIP backends follow: a name's endpoints are those
//! reported by reachable hosts; if no reachable host reports the name, all of its
//! endpoints stay (a cut-off node keeps answering what it last knew rather than nothing).
//!
//! Invariants:
//! - [`TaskEndpoints`] is sorted without repeats, also when decoded from a peer's bytes;
//! - the directory's [`TaskDirectory::version`] changes whenever [`TaskDirectory::merged`]
//!   may have (a shell republishes the DNS names only then);
//! - maps are `BTreeMap`s, so a merge is the same on every node that holds the same
//!   records, whatever order they arrived in;
//! - the directory keeps an entry only for a host whose set is not empty.

use crate::vip::Protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

/// A task's DNS name below the tasks zone: `TASK.FRAMEWORK`, each part one or more DNS
/// labels (`web.group` on `marathon` → task `web.group`, framework `marathon`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskName {
    pub task: String,
    pub framework: String,
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.task, self.framework)
    }
}

/// One thing a running task answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskEndpoint {
    /// The task's address: its container address, or its agent's (`A`/`AAAA` records).
    Address(IpAddr),
    /// A port it listens on, at the address that reaches it (`SRV` records).
    Port {
        protocol: Protocol,
        ip: IpAddr,
        port: u16,
    },
}

/// The endpoints of one name on one host: a sorted vector without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TaskEndpoints(Vec<TaskEndpoint>);

impl From<Vec<TaskEndpoint>> for TaskEndpoints {
    fn from(mut endpoints: Vec<TaskEndpoint>) -> TaskEndpoints {
        endpoints.sort_unstable();
        endpoints.dedup();
        TaskEndpoints(endpoints)
    }
}

impl<'de> Deserialize<'de> for TaskEndpoints {
    /// A peer's list is normalized, never trusted to be sorted.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<TaskEndpoint>::deserialize(deserializer).map(TaskEndpoints::from)
    }
}

impl TaskEndpoints {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, TaskEndpoint> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[TaskEndpoint] {
        &self.0
    }
}

/// One host's running tasks, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSet {
    pub names: BTreeMap<TaskName, TaskEndpoints>,
}

impl TaskSet {
    pub fn new() -> TaskSet {
        TaskSet::default()
    }

    /// One empty set shared by every holder that has nothing, like
    /// [`crate::vip::VipSet::shared_empty`].
    pub fn shared_empty() -> Arc<TaskSet> {
        static EMPTY: LazyLock<Arc<TaskSet>> = LazyLock::new(Arc::default);
        EMPTY.clone()
    }

    /// Adds the endpoints of one instance of `name`.
    pub fn insert(&mut self, name: TaskName, endpoints: impl IntoIterator<Item = TaskEndpoint>) {
        let entry = self.names.entry(name).or_default();
        let mut all = std::mem::take(&mut entry.0);
        all.extend(endpoints);
        *entry = TaskEndpoints::from(all);
    }

    /// Endpoints over every name (what the record bounds count).
    pub fn endpoint_count(&self) -> usize {
        self.names.values().map(TaskEndpoints::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Drops spare capacity (a set kept for as long as it is published).
    pub fn shrink_to_fit(&mut self) {
        for endpoints in self.names.values_mut() {
            endpoints.0.shrink_to_fit();
        }
    }
}

#[derive(Clone, Debug)]
struct Origin {
    tasks: Arc<TaskSet>,
    reachable: bool,
}

/// Every host's tasks, and whether each host is reachable.
#[derive(Clone, Debug, Default)]
pub struct TaskDirectory {
    origins: BTreeMap<SocketAddr, Origin>,
    version: u64,
}

impl TaskDirectory {
    pub fn new() -> TaskDirectory {
        TaskDirectory::default()
    }

    /// Changes whenever [`TaskDirectory::merged`] may have.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Records what `origin` reports now, and whether it is reachable now.
    pub fn set_origin(&mut self, origin: SocketAddr, tasks: Arc<TaskSet>, reachable: bool) {
        self.set_reachable(origin, reachable);
        match self.origins.get_mut(&origin) {
            // An origin without tasks is not kept (most hosts of a large cluster).
            Some(_) if tasks.is_empty() => {
                self.origins.remove(&origin);
                self.version += 1;
            }
            Some(o) if Arc::ptr_eq(&o.tasks, &tasks) || *o.tasks == *tasks => o.tasks = tasks,
            Some(o) => {
                o.tasks = tasks;
                self.version += 1;
            }
            None if tasks.is_empty() => {}
            None => {
                self.origins.insert(origin, Origin { tasks, reachable });
                self.version += 1;
            }
        }
    }

    /// Whether `origin`'s entry holds exactly `tasks` (the same shared set; an empty set
    /// when there is no entry).
    pub fn holds(&self, origin: &SocketAddr, tasks: &Arc<TaskSet>) -> bool {
        self.origins
            .get(origin)
            .map_or(tasks.is_empty(), |o| Arc::ptr_eq(&o.tasks, tasks))
    }

    /// Lets go of `origin`'s shared set so that its holder (the record store) can change it
    /// in place; [`TaskDirectory::set_origin`] gives the new set back.
    pub fn detach(&mut self, origin: SocketAddr) {
        if let Some(o) = self.origins.get_mut(&origin) {
            o.tasks = TaskSet::shared_empty();
        }
    }

    /// Records whether `origin` is reachable (an origin without tasks has no entry:
    /// [`TaskDirectory::set_origin`] is told again when it reports some).
    pub fn set_reachable(&mut self, origin: SocketAddr, reachable: bool) {
        if let Some(o) = self.origins.get_mut(&origin) {
            if o.reachable != reachable {
                o.reachable = reachable;
                self.version += 1;
            }
        }
    }

    /// Forgets `origin` (its record was collected): its tasks go, even where they were the
    /// last of their name.
    pub fn remove_origin(&mut self, origin: SocketAddr) {
        if self.origins.remove(&origin).is_some() {
            self.version += 1;
        }
    }

    /// The tasks of the whole cluster by name: the endpoints reachable hosts report, or,
    /// for a name no reachable host reports, every host's.
    pub fn merged(&self) -> BTreeMap<TaskName, Vec<TaskEndpoint>> {
        // Per name: whether the endpoints gathered so far come from reachable hosts.
        let mut merged: BTreeMap<&TaskName, (bool, Vec<TaskEndpoint>)> = BTreeMap::new();
        for origin in self.origins.values() {
            for (name, endpoints) in &origin.tasks.names {
                let entry = merged
                    .entry(name)
                    .or_insert_with(|| (origin.reachable, Vec::new()));
                if origin.reachable && !entry.0 {
                    *entry = (true, Vec::new());
                }
                if origin.reachable == entry.0 {
                    entry.1.extend(endpoints.iter().copied());
                }
            }
        }
        merged
            .into_iter()
            .map(|(name, (_, endpoints))| (name.clone(), TaskEndpoints::from(endpoints).0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(task: &str) -> TaskName {
        TaskName {
            task: task.into(),
            framework: "marathon".into(),
        }
    }

    fn address(ip: &str) -> TaskEndpoint {
        TaskEndpoint::Address(ip.parse().unwrap())
    }

    fn set(entries: &[(&str, &str)]) -> Arc<TaskSet> {
        let mut set = TaskSet::new();
        for (task, ip) in entries {
            set.insert(name(task), [address(ip)]);
        }
        Arc::new(set)
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    #[test]
    fn endpoints_are_sorted_and_unique_even_from_a_peer() {
        let bytes = postcard::to_allocvec(&vec![
            address("10.0.0.2"),
            address("10.0.0.1"),
            address("10.0.0.2"),
        ])
        .unwrap();
        let decoded: TaskEndpoints = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            decoded.as_slice(),
            &[address("10.0.0.1"), address("10.0.0.2")]
        );
    }

    #[test]
    fn reachable_hosts_answer_for_a_name_and_the_cut_off_keep_what_only_they_have() {
        let mut dir = TaskDirectory::new();
        dir.set_origin(
            addr(1),
            set(&[("web", "10.0.0.1"), ("db", "10.0.0.1")]),
            false,
        );
        dir.set_origin(addr(2), set(&[("web", "10.0.0.2")]), false);
        let v0 = dir.version();
        dir.set_reachable(addr(1), true);
        dir.set_reachable(addr(2), true);
        assert!(dir.version() > v0);
        let all = dir.merged();
        assert_eq!(
            all[&name("web")],
            [address("10.0.0.1"), address("10.0.0.2")]
        );
        // Host 1 is cut off: web is answered by host 2 alone, db (only host 1 has it) stays.
        let v1 = dir.version();
        dir.set_reachable(addr(1), false);
        assert!(dir.version() > v1);
        let cut = dir.merged();
        assert_eq!(cut[&name("web")], [address("10.0.0.2")]);
        assert_eq!(cut[&name("db")], [address("10.0.0.1")]);
        // Collected: gone even where it was the last.
        dir.remove_origin(addr(1));
        assert!(!dir.merged().contains_key(&name("db")));
    }

    #[test]
    fn the_version_moves_only_with_what_the_merge_sees() {
        let mut dir = TaskDirectory::new();
        dir.set_reachable(addr(1), true);
        let v = dir.version();
        dir.set_origin(addr(1), set(&[]), true);
        dir.set_reachable(addr(3), true);
        assert_eq!(dir.version(), v, "empty sets change nothing");
        dir.set_origin(addr(1), set(&[("web", "10.0.0.1")]), true);
        let v = dir.version();
        dir.set_origin(addr(1), set(&[("web", "10.0.0.1")]), true);
        assert_eq!(dir.version(), v, "an equal set changes nothing");
        dir.set_origin(addr(1), set(&[("web", "10.0.0.9")]), true);
        assert!(dir.version() > v);
    }

    #[test]
    fn the_merge_does_not_depend_on_arrival_order() {
        let sets = [
            (addr(1), set(&[("web", "10.0.0.1")]), true),
            (
                addr(2),
                set(&[("web", "10.0.0.2"), ("db", "10.0.0.2")]),
                false,
            ),
            (addr(3), set(&[("db", "10.0.0.3")]), false),
        ];
        let build = |order: &[usize]| {
            let mut dir = TaskDirectory::new();
            for &i in order {
                let (a, s, r) = &sets[i];
                dir.set_origin(*a, s.clone(), false);
                dir.set_reachable(*a, *r);
            }
            dir.merged()
        };
        let first = build(&[0, 1, 2]);
        for order in [[2, 1, 0], [1, 0, 2], [2, 0, 1]] {
            assert_eq!(build(&order), first);
        }
        assert_eq!(first[&name("web")], [address("10.0.0.1")]);
        assert_eq!(
            first[&name("db")],
            [address("10.0.0.2"), address("10.0.0.3")]
        );
    }
}
