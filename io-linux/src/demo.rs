//! `minuteman demo`: minuteman at work on a throwaway cluster in network namespaces on this
//! machine ([`minuteman::lab`]), narrated for a newcomer: the members, load balancing over
//! a VIP, a named VIP, a host failing and coming back, then a running tally until Ctrl-C.
//!
//! Invariants:
//! - Everything lives in namespaces named `mmdemo-*` (the agents' nftables tables too):
//!   on success, error, Ctrl-C, SIGTERM, SIGHUP or panic the lab is torn down (agents and
//!   backends killed, namespaces deleted), so `minuteman cleanup` is never needed. A run
//!   killed outright leaves namespaces that the next run removes first.
//! - A step that cannot show what it announces fails the demo with a message saying what
//!   did not happen and where the logs are (kept in that case); the traffic steps are one
//!   function ([`Demo::traffic`]) that runs only with a data plane that forwards.
//! - Timings are measured by polling (the APIs and `nft list table` in turn, every 20 ms):
//!   they are upper bounds, some tens of milliseconds late at most.

use minuteman::agent::config::DataPlaneArg;
use minuteman::agent::views::StateView;
use minuteman::lab::backend::{HTTP_PORT, UDP_PORT};
use minuteman::lab::cluster::{Cluster, ClusterSpec};
use minuteman::lab::mesos::Task;
use minuteman::lab::net::NetSpec;
use minuteman::lab::request::{Tally, Target};
use minuteman::lab::{self, LabError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The demo's namespaces: `mmdemo-sw`, `mmdemo-h1`, …
pub const PREFIX: &str = "mmdemo";
/// Hosts are `10.77.0.I` and `fd77::I`.
const SUBNET: u8 = 0;
/// The IP VIP every host's task carries (TCP).
const VIP: &str = "10.200.0.1:80";
/// The UDP VIP.
const UDP_VIP: &str = "10.200.0.2:53";
/// The named VIP's label, and the name the agents list it under.
const NAMED_LABEL: &str = "/web:80";
const NAMED: &str = "web.marathon:80";
/// Requests per tally.
const REQUESTS: usize = 30;
/// A request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Hosts in the lab, 2 to 16; the last one is the one that fails.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub hosts: u16,
    /// Run the script once, tear everything down and exit, instead of keeping the cluster
    /// running with a tally every few seconds until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// The agents' data plane: `nftables` balances VIP traffic in each host's kernel;
    /// `none` only computes it, so the demo shows the cluster and its VIPs but sends no
    /// traffic through them.
    #[arg(long, value_enum, default_value = "nftables")]
    pub dataplane: DataPlaneArg,
}

/// Set by SIGINT, SIGTERM or SIGHUP.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Failed(String),
}

fn failed(text: impl Into<String>) -> DemoError {
    DemoError::Failed(text.into())
}

pub fn run(args: DemoArgs) -> ExitCode {
    let nftables = args.dataplane == DataPlaneArg::Nftables;
    let mut tools = vec!["ip"];
    if nftables {
        tools.push("nft");
    }
    let missing = lab::missing_requirements(&tools);
    if !missing.is_empty() {
        eprintln!("minuteman demo builds network namespaces, so it needs:");
        for what in &missing {
            let hint = match what.as_str() {
                "root" => "run it as root, e.g. `sudo minuteman demo`",
                "`ip`" => "install iproute2",
                "`nft`" => "install nftables (or run with --dataplane none: no traffic then)",
                _ => "",
            };
            eprintln!("  {what}: missing; {hint}");
        }
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this program's own path: {e}");
            return ExitCode::FAILURE;
        }
    };
    watch_signals();
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    let hosts = usize::from(args.hosts);
    println!(
        "minuteman demo: {hosts} hosts, each a network namespace on this machine, one \
         minuteman agent per host ({} data plane).",
        if nftables { "nftables" } else { "no" }
    );
    println!(
        "Agent logs, Mesos state files and the cluster key: {}",
        dir.display()
    );
    let spec = ClusterSpec {
        net: NetSpec {
            prefix: PREFIX.to_owned(),
            subnet: SUBNET,
            hosts,
            container: false,
        },
        dir: dir.clone(),
        exe: exe.clone(),
        poll_interval: Duration::from_millis(500),
        agent_flags: vec![
            "--dataplane".into(),
            if nftables { "nftables" } else { "none" }.into(),
        ],
    };
    heading("1. The lab");
    let cluster = match Cluster::start(spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot build the lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut demo = Demo {
        c: cluster,
        exe,
        nftables,
        started: Instant::now(),
    };
    let result = demo.script(args.once);
    let code = match &result {
        Ok(()) => ExitCode::SUCCESS,
        Err(DemoError::Interrupted) => {
            println!("\nInterrupted.");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("\nerror: {e}");
            demo.c.keep_dir();
            ExitCode::FAILURE
        }
    };
    println!(
        "Tearing down: agents and backends killed, namespaces {PREFIX}-* deleted (with the \
         agents' kernel tables in them)."
    );
    if let Err(e) = demo.c.teardown() {
        eprintln!("error: teardown: {e}");
        return ExitCode::FAILURE;
    }
    if result.is_err() && !matches!(result, Err(DemoError::Interrupted)) {
        eprintln!("The logs are kept in {}", dir.display());
    }
    code
}

/// Sets [`STOP`] on SIGINT, SIGTERM or SIGHUP (a thread of its own waits for them).
fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "warning: cannot watch for Ctrl-C ({e}); a Ctrl-C may leave namespaces \
                 behind, which the next run removes"
            );
            return;
        }
    };
    // Registered here, before the lab exists, so no signal is missed.
    let handlers = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    });
    let Ok((mut int, mut term, mut hup)) = handlers else {
        eprintln!(
            "warning: cannot watch for Ctrl-C; a Ctrl-C may leave namespaces behind, which \
             the next run removes"
        );
        return;
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        });
        STOP.store(true, Ordering::SeqCst);
    });
}

fn heading(text: &str) {
    println!("\n== {text}");
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(2) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Demo {
    c: Cluster,
    exe: PathBuf,
    nftables: bool,
    started: Instant,
}

impl Demo {
    fn hosts(&self) -> usize {
        self.c.hosts()
    }

    fn vip_target(&self) -> Target {
        Target::Http {
            addr: VIP.parse().expect("an address"),
            path: "/".into(),
        }
    }

    /// Polls `check` until it holds (the time it took) or `limit` passes (`None`); fails
    /// at once on Ctrl-C or when an agent died.
    fn wait(
        &mut self,
        limit: Duration,
        mut check: impl FnMut(&Cluster) -> Result<bool, DemoError>,
    ) -> Result<Option<Duration>, DemoError> {
        let c = &mut self.c;
        lab::wait_until(limit, || {
            if STOP.load(Ordering::SeqCst) {
                return Err(DemoError::Interrupted);
            }
            c.check_agents()?;
            check(c)
        })
    }

    fn script(&mut self, once: bool) -> Result<(), DemoError> {
        self.show_lab();
        self.start_agents()?;
        self.show_members()?;
        self.show_vips()?;
        if self.nftables {
            self.traffic()?;
        } else {
            heading("4. Traffic");
            println!(
                "Skipped: with --dataplane none the agents compute the kernel state but install \
                 nothing, so nothing forwards VIP traffic."
            );
        }
        self.failover()?;
        if once {
            println!("\nDone (--once).");
            Ok(())
        } else {
            self.keep_running()
        }
    }

    fn show_lab(&self) {
        let net = self.c.net();
        println!(
            "Namespaces {} … {} hang off a bridge in {}, like hosts on one LAN:",
            net.host(1),
            net.host(self.hosts()),
            net.switch()
        );
        for i in 1..=self.hosts() {
            println!(
                "  {:<4} {:<12} {:<12} {}",
                Cluster::name(i),
                net.host(i),
                net.ip(i),
                net.ip6(i)
            );
        }
        println!(
            "Each host runs a tiny server standing in for a task: it answers its host's name \
             (h1, h2, …) over HTTP on port {HTTP_PORT} and over UDP on port {UDP_PORT}."
        );
    }

    fn start_agents(&mut self) -> Result<(), DemoError> {
        heading("2. The agents");
        for i in 1..=self.hosts() {
            self.c.write_tasks(i, &[task(i)])?;
        }
        println!(
            "Each host's Mesos state (a file standing in for the Mesos agent's /state) holds \
             one task, web-hI, with two labels on its port {HTTP_PORT}/tcp and one on \
             {UDP_PORT}/udp:"
        );
        println!("  VIP_0={VIP}        an IP VIP: clients connect to this address");
        println!("  VIP_1={NAMED_LABEL}             a named VIP: minuteman picks its address");
        println!("  VIP_0={UDP_VIP} (udp)  a UDP VIP");
        println!(
            "Starting `minuteman agent` in every namespace; h2 … h{} join through h1.",
            self.hosts()
        );
        self.c.start_all()?;
        let n = self.hosts();
        let took = self.wait(Duration::from_secs(30), |c| {
            Ok((1..=n).all(|i| c.api_backends(i, VIP).len() == n))
        })?;
        let took = took.ok_or_else(|| {
            failed(format!(
                "not every agent lists all {n} backends of {VIP} after 30 s (their logs are \
                 agent-hI.log)"
            ))
        })?;
        println!(
            "Every agent lists all {n} backends of {VIP} {} after they started.",
            ms(took)
        );
        // Removals wait for a complete view: in a cluster that started cold, 2 s after an
        // agent's first link. The failover below should show a settled cluster.
        let complete = self.wait(Duration::from_secs(10), |c| {
            Ok((1..=n).all(|i| {
                c.api::<StateView>(i, "/v1/state")
                    .is_ok_and(|s| s.view_complete)
            }))
        })?;
        let complete = complete.ok_or_else(|| {
            failed("not every agent's view of the cluster is complete after 10 s")
        })?;
        println!(
            "Every agent's view of the cluster is complete {} later: until then an agent \
             removes nothing from its kernel (in a cluster that starts cold, for 2 s).",
            ms(complete)
        );
        if self.nftables {
            let backends: Vec<SocketAddr> = (1..=n).map(|i| self.c.backend(i)).collect();
            let in_kernel = self.wait(Duration::from_secs(10), |c| {
                Ok(all(backends.iter().copied(), |b| c.table_holds(1, b))?)
            })?;
            if in_kernel.is_none() {
                let table = match self.c.nft_table(1)? {
                    None => "h1's kernel has no table `inet minuteman` at all".to_owned(),
                    Some(_) => "h1's table `inet minuteman` lacks some of them".to_owned(),
                };
                return Err(failed(format!(
                    "h1's agent knows every backend but its kernel does not hold them 10 s \
                     later ({table}): the nftables data plane did not install them; see \
                     agent-h1.log"
                )));
            }
        }
        Ok(())
    }

    /// `minuteman ARGS` inside host 1's namespace; its output.
    fn cli(&self, args: &[&str]) -> Result<String, DemoError> {
        let mut cmd = self.c.net().exec(&self.c.ns(1), &self.exe);
        cmd.args(args);
        let out = lab::run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    fn show_members(&mut self) -> Result<(), DemoError> {
        heading("3. The members, as h1 sees them (`minuteman members` in h1)");
        println!("{}", indent(&self.cli(&["members"])?));
        println!(
            "Every agent links to up to 5 others and pings them every 50 ms; a host whose \
             agent and kernel both stop answering for 180 ms is declared down, by everyone, \
             and its backends leave every kernel."
        );
        Ok(())
    }

    fn show_vips(&mut self) -> Result<(), DemoError> {
        println!("\nThe VIPs, as h1 sees them (`minuteman vips` in h1):");
        println!("{}", indent(&self.cli(&["vips"])?));
        let named = self.named_address(1)?;
        let n = self.hosts();
        for i in 2..=n {
            let theirs = self.named_address(i)?;
            if theirs != named {
                return Err(failed(format!(
                    "h1 gives {NAMED} the address {named} but h{i} gives it {theirs}"
                )));
            }
        }
        println!(
            "The named VIP {NAMED_LABEL} is listed as {NAMED} at {named} on all {n} hosts: \
             each agent derives the address from the name alone (a hash probe in 11.0.0.0/8), \
             so they agree without asking each other."
        );
        Ok(())
    }

    /// The address host `i` gives the named VIP.
    fn named_address(&self, i: usize) -> Result<SocketAddr, DemoError> {
        let vips = self.c.vips(i).map_err(failed)?;
        vips.iter()
            .find(|v| v.vip == NAMED)
            .and_then(|v| v.services.iter().find(|s| s.address.is_ipv4()))
            .map(|s| s.address)
            .ok_or_else(|| failed(format!("h{i} does not list the named VIP {NAMED}")))
    }

    /// `count` requests from host 1 to `target`; the tally, or an error naming the first
    /// failure.
    fn tally(&self, target: &Target, count: usize) -> Result<Tally, DemoError> {
        let results = self
            .c
            .ask_many(&self.c.ns(1), target, count, REQUEST_TIMEOUT, true)?;
        let mut tally = Tally::default();
        results.iter().for_each(|r| tally.add(r));
        if let Some(error) = tally.first_error() {
            return Err(failed(format!(
                "a request from h1 to {target} failed ({error}) after {} that went through \
                 ({tally}). The agents agree on the VIP (above), so the kernel did not \
                 forward it: is the nftables data plane of this build working? Look at \
                 `ip netns exec {} nft list table inet minuteman` and agent-h1.log",
                tally.total() - tally.failed(),
                self.c.ns(1)
            )));
        }
        Ok(tally)
    }

    /// The traffic steps: only with a data plane that forwards.
    fn traffic(&mut self) -> Result<(), DemoError> {
        heading("4. Load balancing");
        let target = self.vip_target();
        println!(
            "{REQUESTS} HTTP requests from h1 to {target}, a new connection each; h1's kernel \
             picks a backend for every connection (nftables DNAT, random):"
        );
        let tally = self.tally(&target, REQUESTS)?;
        println!("  {tally}");
        let udp = Target::Udp(UDP_VIP.parse().expect("an address"));
        println!("10 UDP datagrams from h1 to {UDP_VIP}:");
        println!("  {}", self.tally(&udp, 10)?);
        let named = self.named_address(1)?;
        let target = Target::Http {
            addr: named,
            path: "/".into(),
        };
        println!("10 requests through the named VIP, {target}:");
        println!("  {}", self.tally(&target, 10)?);
        let entries = self.kernel_entries(1)?;
        if !entries.is_empty() {
            println!(
                "{VIP} in h1's kernel (`nft list table inet minuteman`): the verdict map sends \
                 the service to the chain of its modulus, which picks a slot at random; each \
                 slot names a backend:"
            );
            for entry in entries {
                println!("  {entry}");
            }
        }
        Ok(())
    }

    /// What host `i`'s table holds for the VIP's service: its `services4` element, the
    /// rule of the modulus chain it goes to, and its slot elements.
    fn kernel_entries(&self, i: usize) -> Result<Vec<String>, DemoError> {
        let Some(table) = self.c.nft_table(i)? else {
            return Ok(Vec::new());
        };
        let addr: SocketAddr = VIP.parse().expect("an address");
        let key = format!("{} . {}", addr.ip(), addr.port());
        let fragments: Vec<&str> = table
            .split(['\n', ',', '{', '}'])
            .map(str::trim)
            .filter(|f| f.contains(&key) && f.contains(':'))
            .collect();
        let mut out: Vec<String> = fragments
            .iter()
            .filter(|f| f.contains("goto"))
            .map(|f| (*f).to_owned())
            .collect();
        let chain = out
            .first()
            .and_then(|f| f.rsplit("goto ").next())
            .map(|c| c.trim().to_owned());
        if let Some(chain) = chain {
            let mut lines = table.lines().map(str::trim);
            if lines.any(|l| l.starts_with(&format!("chain {chain} "))) {
                if let Some(rule) = lines.find(|l| !l.is_empty()) {
                    out.push(format!("chain {chain}: {rule}"));
                }
            }
        }
        out.extend(
            fragments
                .iter()
                .filter(|f| !f.contains("goto"))
                .map(|f| (*f).to_owned()),
        );
        Ok(out)
    }

    fn failover(&mut self) -> Result<(), DemoError> {
        let n = self.hosts();
        let victim = Cluster::name(n);
        let backend = self.c.backend(n);
        heading(&format!("5. {victim} fails"));
        println!(
            "SIGKILL {victim}'s agent and cut {victim}'s link, as if the host died; then watch h1."
        );
        let t0 = Instant::now();
        self.c.kill_agent(n);
        self.c.net().set_link(n, false)?;
        let (mut api, mut everywhere, mut kernel) = (None, None, None);
        let nftables = self.nftables;
        self.wait(Duration::from_secs(10), |c| {
            // One read of every survivor's API per round, so h1's time is never later than
            // "every survivor".
            let gone: Vec<bool> = (1..n)
                .map(|i| lists(c, i, backend) == Some(false))
                .collect();
            if api.is_none() && gone[0] {
                api = Some(t0.elapsed());
            }
            if everywhere.is_none() && gone.iter().all(|g| *g) {
                everywhere = Some(t0.elapsed());
            }
            if nftables && kernel.is_none() && !c.table_holds(1, backend)? {
                kernel = Some(t0.elapsed());
            }
            Ok(api.is_some() && everywhere.is_some() && (kernel.is_some() || !nftables))
        })?
        .ok_or_else(|| {
            failed(format!(
                "{victim}'s backend is still listed 10 s after its host died (h1's API: {}, \
                 every survivor: {}, h1's kernel: {})",
                api.map_or("still there".to_owned(), ms),
                everywhere.map_or("still there".to_owned(), ms),
                kernel.map_or("still there".to_owned(), ms),
            ))
        })?;
        let (api, everywhere) = (api.expect("measured"), everywhere.expect("measured"));
        match kernel {
            Some(kernel) => println!(
                "failover: {victim} out of h1's API after {}, out of h1's kernel table after {} \
                 (out of every survivor's API after {})",
                ms(api),
                ms(kernel),
                ms(everywhere)
            ),
            None => println!(
                "failover: {victim} out of h1's API after {} (out of every survivor's API after \
                 {}; no kernel table with --dataplane none)",
                ms(api),
                ms(everywhere)
            ),
        }
        let state = self
            .c
            .members(1)
            .map_err(failed)?
            .into_iter()
            .find(|m| m.address.ip() == self.c.ip(n))
            .map_or("not listed".to_owned(), |m| m.state);
        println!("h1 now lists {victim} as {state}.");
        if self.nftables {
            let target = self.vip_target();
            println!("{REQUESTS} requests from h1 to {target}: the survivors take them all:");
            println!("  {}", self.tally(&target, REQUESTS)?);
        }

        heading(&format!("6. {victim} comes back"));
        println!("Link up, agent restarted (a new incarnation of the same host).");
        self.c.net().set_link(n, true)?;
        let t1 = Instant::now();
        self.c.start_agent(n, &[])?;
        let (mut api, mut kernel) = (None, None);
        self.wait(Duration::from_secs(15), |c| {
            if api.is_none() && (1..=n).all(|i| lists(c, i, backend) == Some(true)) {
                api = Some(t1.elapsed());
            }
            if nftables && kernel.is_none() && all(1..=n, |i| c.table_holds(i, backend))? {
                kernel = Some(t1.elapsed());
            }
            Ok(api.is_some() && (kernel.is_some() || !nftables))
        })?
        .ok_or_else(|| {
            failed(format!(
                "{victim} is not back everywhere 15 s after its agent restarted"
            ))
        })?;
        let api = api.expect("measured");
        match kernel {
            Some(kernel) => println!(
                "back: {victim} in every host's API after {}, in every host's kernel table after {}",
                ms(api),
                ms(kernel)
            ),
            None => println!("back: {victim} in every host's API after {}", ms(api)),
        }
        if self.nftables {
            // The cut left h1's ARP entry for the victim failed; the kernel retries it
            // within a second. Let it, so the tally shows the balance, not the retry.
            let direct = Target::Http {
                addr: backend,
                path: "/".into(),
            };
            let _ = self.wait(Duration::from_secs(3), |c| {
                Ok(c.ask(&c.ns(1), &direct, Duration::from_millis(500))?
                    .is_ok())
            })?;
            let target = self.vip_target();
            println!("{REQUESTS} requests from h1 to {target}:");
            println!("  {}", self.tally(&target, REQUESTS)?);
        }
        Ok(())
    }

    fn keep_running(&mut self) -> Result<(), DemoError> {
        heading("Running until Ctrl-C");
        let exe = self.exe.display();
        let (h1, h2, sw) = (self.c.ns(1), self.c.ns(2), self.c.net().switch());
        println!("Meanwhile, try in another terminal (as root):");
        println!("  ip netns exec {h1} {exe} vips      # or members, status");
        if self.nftables {
            println!(
                "  ip netns exec {h2} curl -s http://{}/",
                VIP.trim_end_matches(":80")
            );
        }
        println!("  ip -n {sw} link set p2 down   # cut h2's link; `up` to restore it");
        let target = self.vip_target();
        loop {
            for _ in 0..30 {
                if STOP.load(Ordering::SeqCst) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let members = self.c.members(1).unwrap_or_default();
            let reachable = members.iter().filter(|m| m.state == "reachable").count();
            let mut line = format!(
                "[{:>4} s] h1 sees {reachable} of {} members reachable",
                self.started.elapsed().as_secs(),
                members.len()
            );
            if self.nftables {
                let results =
                    self.c
                        .ask_many(&h1, &target, 20, Duration::from_millis(500), false)?;
                let mut tally = Tally::default();
                results.iter().for_each(|r| tally.add(r));
                line.push_str(&format!("; 20 requests to {target}: {tally}"));
            }
            println!("{line}");
        }
    }
}

/// Whether host `i`'s API lists `backend` (with a positive weight) for the VIP; `None`
/// while the API does not answer.
fn lists(c: &Cluster, i: usize, backend: SocketAddr) -> Option<bool> {
    let vips = c.vips(i).ok()?;
    Some(
        vips.iter()
            .filter(|v| v.vip == VIP)
            .flat_map(|v| &v.services)
            .flat_map(|s| &s.backends)
            .any(|b| b.address == backend && b.weight > 0),
    )
}

/// Whether `check` holds for every item (stops at the first no or error).
fn all<T>(
    items: impl IntoIterator<Item = T>,
    mut check: impl FnMut(T) -> Result<bool, LabError>,
) -> Result<bool, LabError> {
    for item in items {
        if !check(item)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Host `i`'s one task: the IP VIP and the named VIP on its HTTP port, the UDP VIP on its
/// UDP port.
fn task(i: usize) -> Task {
    Task {
        id: format!("web-h{i}"),
        name: "web".to_owned(),
        ports: vec![
            (
                "tcp",
                HTTP_PORT,
                vec![VIP.to_owned(), NAMED_LABEL.to_owned()],
            ),
            ("udp", UDP_PORT, vec![UDP_VIP.to_owned()]),
        ],
        container_ip: None,
    }
}
