//! The lab's network: namespaces, the bridge, veths, addresses, routes, the container
//! behind host 1 (layout in the [module docs](super)), links cut and restored, and
//! [`in_netns`] to run code inside a namespace.
//!
//! Invariants:
//! - [`Net::build`] removes leftovers of an earlier lab with the same prefix before it
//!   creates anything, and tears down what it created if a step fails.
//! - A [`Net`] owns its namespaces: [`Net::teardown`] (also on drop) kills every process
//!   inside them and deletes them; a second teardown does nothing.
//! - [`in_netns`] runs its closure on a fresh thread that ends with it, so no thread of the
//!   caller ever changes namespace.

use super::{ip, run, LabError};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// Names every namespace of the lab: `PREFIX-sw`, `PREFIX-h1`, … Lowercase letters,
    /// digits and `-`, at most 24 bytes.
    pub prefix: String,
    /// The third byte of the hosts' IPv4 addresses (`10.77.S.I`), the second group of their
    /// IPv6 ones (`fd77:S::I`).
    pub subnet: u8,
    /// Hosts, 1 to 250.
    pub hosts: usize,
    /// Whether to add the container namespace behind host 1.
    pub container: bool,
}

impl NetSpec {
    fn validate(&self) -> Result<(), LabError> {
        let ok_prefix = !self.prefix.is_empty()
            && self.prefix.len() <= 24
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_prefix {
            return Err(LabError::Invalid(format!(
                "lab prefix {:?}: use 1 to 24 lowercase letters, digits or '-'",
                self.prefix
            )));
        }
        if !(1..=250).contains(&self.hosts) {
            return Err(LabError::Invalid(format!(
                "{} hosts: a lab has 1 to 250",
                self.hosts
            )));
        }
        Ok(())
    }
}

/// The built network. Torn down on drop.
#[derive(Debug)]
pub struct Net {
    spec: NetSpec,
    torn_down: bool,
}

impl Net {
    /// Removes leftovers of a lab with the same prefix, then builds this one.
    pub fn build(spec: NetSpec) -> Result<Net, LabError> {
        spec.validate()?;
        remove_leftovers(&spec.prefix)?;
        let net = Net {
            spec,
            torn_down: false,
        };
        // On error `net` is dropped here, which removes whatever was created.
        net.create()?;
        Ok(net)
    }

    fn create(&self) -> Result<(), LabError> {
        let sw = self.switch();
        add_namespace(&sw)?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=self.spec.hosts {
            let ns = self.host(i);
            add_namespace(&ns)?;
            let (a, b) = (format!("e{i}"), format!("p{i}"));
            ip(&[
                "link", "add", &a, "netns", &ns, "type", "veth", "peer", "name", &b, "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &b, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.ip(i)),
                "dev",
                &a,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/64", self.ip6(i)),
                "dev",
                &a,
                "nodad",
            ])?;
            ip(&["-n", &ns, "link", "set", &a, "up"])?;
            // VIPs are routed like any address off the host (a real host's default
            // route); the kernel table rewrites them before the packet leaves.
            ip(&["-n", &ns, "route", "add", "default", "dev", &a])?;
            ip(&["-n", &ns, "-6", "route", "add", "default", "dev", &a])?;
        }
        if self.spec.container {
            let (host, ctr) = (self.host(1), self.container());
            let gateway = self.container_gateway();
            add_namespace(&ctr)?;
            ip(&["-n", &host, "link", "add", "cbr0", "type", "bridge"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                "cbr0",
            ])?;
            ip(&["-n", &host, "link", "set", "cbr0", "up"])?;
            ip(&[
                "link", "add", "c0", "netns", &ctr, "type", "veth", "peer", "name", "cv0", "netns",
                &host,
            ])?;
            ip(&["-n", &host, "link", "set", "cv0", "master", "cbr0", "up"])?;
            let addr = format!("{}/24", self.container_ip());
            ip(&["-n", &ctr, "addr", "add", &addr, "dev", "c0"])?;
            ip(&["-n", &ctr, "link", "set", "c0", "up"])?;
            ip(&[
                "-n",
                &ctr,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ])?;
            // /proc/sys/net is the namespace of the thread that opens it.
            in_netns(&host, || {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .map_err(|e| LabError::io(format!("enabling forwarding in {host}"), e))
            })??;
        }
        Ok(())
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    pub fn hosts(&self) -> usize {
        self.spec.hosts
    }

    /// The switch's namespace.
    pub fn switch(&self) -> String {
        format!("{}-sw", self.spec.prefix)
    }

    /// Host `i`'s namespace (1-based).
    pub fn host(&self, i: usize) -> String {
        format!("{}-h{i}", self.spec.prefix)
    }

    /// The container's namespace (exists when the spec asked for it).
    pub fn container(&self) -> String {
        format!("{}-c1", self.spec.prefix)
    }

    /// Host `i`'s IPv4 address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.spec.subnet, i as u8)
    }

    /// Host `i`'s IPv6 address.
    pub fn ip6(&self, i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, self.spec.subnet.into(), 0, 0, 0, 0, 0, i as u16)
    }

    /// The container's address.
    pub fn container_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.spec.subnet, 2)
    }

    /// Host 1's address on the container bridge.
    pub fn container_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.spec.subnet, 1)
    }

    /// Every namespace of this lab, the switch last.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = (1..=self.spec.hosts).map(|i| self.host(i)).collect();
        if self.spec.container {
            all.push(self.container());
        }
        all.push(self.switch());
        all
    }

    /// Cuts (`false`) or restores (`true`) host `i`'s link, at the switch's end. Restoring
    /// returns once the host's end has its carrier back (the kernel notices within a
    /// second), so traffic flows again.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch(), "link", "set", &format!("p{i}"), state])?;
        if !up {
            return Ok(());
        }
        let (ns, dev) = (self.host(i), format!("e{i}"));
        let limit = std::time::Duration::from_secs(5);
        let carrier = super::wait_until(limit, || {
            let out = ip(&["-n", &ns, "-o", "link", "show", &dev])?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok::<_, LabError>(text.contains("LOWER_UP") && text.contains("state UP"))
        })?;
        match carrier {
            Some(_) => Ok(()),
            None => Err(LabError::Timeout {
                what: format!("{dev} in {ns} getting its carrier back"),
                limit,
            }),
        }
    }

    /// A command that runs `program` inside namespace `ns` (`ip netns exec NS PROGRAM`).
    pub fn exec(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        exec(ns, program)
    }

    /// Kills every process inside the namespaces and deletes them. Idempotent; every step
    /// is attempted, the first error returned.
    pub fn teardown(&mut self) -> Result<(), LabError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut first = Ok(());
        for ns in self.namespaces() {
            if let Err(e) = remove_namespace(&ns) {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            eprintln!("lab teardown: {error}");
        }
    }
}

/// `ip netns exec NS PROGRAM`.
pub fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

fn add_namespace(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"]).map(drop)
}

/// The namespaces that exist now, by name.
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Whether `name` is a namespace a lab with `prefix` creates.
pub fn belongs_to(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    rest == "sw"
        || rest == "c1"
        || rest
            .strip_prefix('h')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the namespaces an earlier lab with `prefix` left behind (with the processes in
/// them); returns their names.
pub fn remove_leftovers(prefix: &str) -> Result<Vec<String>, LabError> {
    let leftovers: Vec<String> = list_namespaces()?
        .into_iter()
        .filter(|ns| belongs_to(prefix, ns))
        .collect();
    for ns in &leftovers {
        remove_namespace(ns)?;
    }
    Ok(leftovers)
}

/// SIGKILLs every process inside `ns`, then deletes it. A namespace that is already gone
/// is fine.
fn remove_namespace(ns: &str) -> Result<(), LabError> {
    if !Path::new("/run/netns").join(ns).exists() {
        return Ok(());
    }
    if let Ok(out) = ip(&["netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<libc::pid_t>().ok())
            .filter(|&pid| pid as u32 != std::process::id())
        {
            // SAFETY: kill has no memory preconditions; the pid is a process inside a
            // namespace of this lab, which only the lab's processes enter.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    run(Command::new("ip").args(["netns", "del", ns])).map(drop)
}

/// Runs `f` inside network namespace `ns` (`/run/netns/NS`), on a thread of its own: the
/// sockets it opens and the processes it spawns belong to that namespace. A panic in `f`
/// is passed on.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    let file = std::fs::File::open(Path::new("/run/netns").join(ns)).map_err(|source| {
        LabError::Netns {
            ns: ns.to_owned(),
            source,
        }
    })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            // SAFETY: setns on a valid descriptor; it changes only this thread, which ends
            // when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(LabError::Netns {
                    ns: ns.to_owned(),
                    source: std::io::Error::last_os_error(),
                });
            }
            drop(file);
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_namespaces_are_recognised_by_exact_shape() {
        for yes in ["mmdemo-sw", "mmdemo-c1", "mmdemo-h1", "mmdemo-h250"] {
            assert!(belongs_to("mmdemo", yes), "{yes}");
        }
        for no in [
            "mmdemo",
            "mmdemo-",
            "mmdemo-h",
            "mmdemo-hx",
            "mmdemo-h1x",
            "mmdemo-sw2",
            "mmdemox-h1",
            "other-h1",
            "mm-h1",
        ] {
            assert!(!belongs_to("mmdemo", no), "{no}");
        }
    }

    /// Root: builds a lab, talks across it from inside its namespaces, cuts a link, then
    /// checks that a lab abandoned without teardown is cleared by the next build and that
    /// teardown leaves nothing.
    #[test]
    fn a_lab_is_built_used_and_removed_without_leftovers() {
        if !crate::lab::root_suite_ready("lab::net", &["ip"]) {
            return;
        }
        let prefix = format!("mmlabt{}", std::process::id() % 100_000);
        let spec = NetSpec {
            prefix: prefix.clone(),
            subnet: 9,
            hosts: 2,
            container: true,
        };
        let ours = || -> Vec<String> {
            list_namespaces()
                .unwrap()
                .into_iter()
                .filter(|ns| belongs_to(&prefix, ns))
                .collect()
        };
        let net = Net::build(spec.clone()).unwrap();
        assert_eq!(ours().len(), 4, "{:?}", ours());
        // A listener on h1; connections from h2 over the bridge and from the container
        // behind h1.
        let listener = in_netns(&net.host(1), || {
            std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).unwrap()
        })
        .unwrap();
        let to = std::net::SocketAddr::from((net.ip(1), listener.local_addr().unwrap().port()));
        // Long enough for the ARP retry (up to 1 s) of a neighbour entry the cut left
        // unresolved.
        let connect = |ns: &str| {
            in_netns(ns, || {
                std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(2))
                    .map(drop)
            })
            .unwrap()
        };
        assert!(connect(&net.host(2)).is_ok());
        assert!(connect(&net.container()).is_ok());
        let forwarding = in_netns(&net.host(1), || {
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
        })
        .unwrap();
        assert_eq!(forwarding.trim(), "1", "host 1 forwards for its container");
        net.set_link(2, false).unwrap();
        assert!(
            connect(&net.host(2)).is_err(),
            "the cut link carries nothing"
        );
        net.set_link(2, true).unwrap();
        assert!(connect(&net.host(2)).is_ok());
        drop(listener);

        // A crashed run leaves its namespaces (and a process in one); the next build clears
        // them first.
        let mut sleeper = exec(&net.host(2), "sleep").arg("600").spawn().unwrap();
        std::mem::forget(net);
        assert_eq!(ours().len(), 4);
        let mut net = Net::build(NetSpec {
            hosts: 1,
            container: false,
            ..spec
        })
        .unwrap();
        let mut now = ours();
        now.sort();
        assert_eq!(now, [format!("{prefix}-h1"), format!("{prefix}-sw")]);
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the leftover's process was killed");
        net.teardown().unwrap();
        net.teardown().unwrap();
        assert!(ours().is_empty(), "{:?}", ours());
    }

    #[test]
    fn specs_are_checked() {
        let spec = |prefix: &str, hosts| NetSpec {
            prefix: prefix.into(),
            subnet: 1,
            hosts,
            container: false,
        };
        assert!(spec("mm61", 3).validate().is_ok());
        assert!(spec("", 3).validate().is_err());
        assert!(spec("Bad Name", 3).validate().is_err());
        assert!(spec("mm", 0).validate().is_err());
        assert!(spec("mm", 251).validate().is_err());
    }
}
