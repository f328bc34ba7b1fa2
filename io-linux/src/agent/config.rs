//! `minuteman agent`'s configuration: command-line flags, `MINUTEMAN_*` environment
//! variables and a TOML file, merged into one validated [`AgentConfig`].
//!
//! Precedence, highest first: a flag, its environment variable, the `--config` file, the
//! default. Every option has the same name in all three places (`--mesos-url`,
//! `MINUTEMAN_MESOS_URL`, `mesos-url = "..."`).
//!
//! Invariants:
//! - [`AgentConfig::resolve`] either returns a config the agent can run with or a
//!   [`ConfigError`] naming the option at fault; nothing is patched silently.
//! - The advertised peer address is a concrete address (never `0.0.0.0` or `::`): it is
//!   the node's identity in the cluster.
//! - Authentication is explicit: a cluster key file, or `--insecure`.

use crate::dataplane::ipvs::host::Masquerade;
use crate::dataplane::DataPlaneKind;
use clap::{Args, ValueEnum};
use minuteman_core::auth::{ClusterKey, FrameAuth};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default peer port.
pub const DEFAULT_PEER_PORT: u16 = 61420;
/// The default HTTP API address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:61421";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/minuteman";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasqueradeArg {
    /// The iptables rule for IPVS-originated, masqueraded connections.
    Iptables,
    /// No rule.
    None,
}

impl From<MasqueradeArg> for Masquerade {
    fn from(arg: MasqueradeArg) -> Masquerade {
        match arg {
            MasqueradeArg::Iptables => Masquerade::Iptables,
            MasqueradeArg::None => Masquerade::None,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastArg {
    /// Every new record version to every active neighbour.
    Flood,
    /// Plumtree: pushed along a tree of links, announced on the others.
    Tree,
}

impl From<BroadcastArg> for minuteman_core::Broadcast {
    fn from(arg: BroadcastArg) -> minuteman_core::Broadcast {
        match arg {
            BroadcastArg::Flood => minuteman_core::Broadcast::Flood,
            BroadcastArg::Tree => minuteman_core::Broadcast::Tree,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlaneArg {
    /// One private nftables table, changed in `nft -f -` transactions.
    Nftables,
    /// IPVS over generic netlink, VIP addresses on a dummy interface, the masquerade rule.
    Ipvs,
    /// Compute and log the kernel operations, touch nothing.
    None,
}

impl From<DataPlaneArg> for DataPlaneKind {
    fn from(arg: DataPlaneArg) -> DataPlaneKind {
        match arg {
            DataPlaneArg::Nftables => DataPlaneKind::Nftables,
            DataPlaneArg::Ipvs => DataPlaneKind::Ipvs,
            DataPlaneArg::None => DataPlaneKind::None,
        }
    }
}

/// `minuteman agent` flags. Every one may also come from its `MINUTEMAN_*` variable or the
/// `--config` file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AgentArgs {
    /// TOML file with any of these options, named as the long flags
    /// (`listen = "10.0.0.5:61420"`, `contact = ["10.0.0.6"]`, `mesos-poll-interval = "2s"`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "MINUTEMAN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// This host's peer address, IP or IP:PORT (port 61420 by default). Other agents reach
    /// this one there, and it names this node in the cluster, so it must be a concrete
    /// address of this host. [default: AGENT_IP:61420]
    #[arg(long, env = "MINUTEMAN_LISTEN", value_name = "IP[:PORT]", value_parser = parse_peer_addr)]
    #[serde(default, deserialize_with = "de_peer_addr_opt")]
    pub listen: Option<SocketAddr>,

    /// A peer to join through, IP or IP:PORT (port 61420 by default); repeat for more.
    /// Without any, this agent starts a cluster of its own and waits for others to join.
    #[arg(long = "contact", env = "MINUTEMAN_CONTACT", value_name = "IP[:PORT]",
          value_parser = parse_peer_addr, value_delimiter = ',')]
    #[serde(default, deserialize_with = "de_peer_addrs")]
    pub contact: Vec<SocketAddr>,

    /// The address of this host's Mesos agent, reported as the agent of every local task.
    /// [default: the IP of --listen]
    #[arg(long, env = "MINUTEMAN_AGENT_IP", value_name = "IP")]
    pub agent_ip: Option<IpAddr>,

    /// The local Mesos agent's state endpoint, polled. [default: http://AGENT_IP:5051/state,
    /// unless --mesos-state-file or --mesos-subscribe-url says otherwise]
    #[arg(
        long,
        env = "MINUTEMAN_MESOS_URL",
        value_name = "URL",
        conflicts_with = "mesos_state_file"
    )]
    pub mesos_url: Option<String>,

    /// Read the Mesos state from this file instead (re-read when it changes): for hosts
    /// without a Mesos agent, and for tests.
    #[arg(long, env = "MINUTEMAN_MESOS_STATE_FILE", value_name = "FILE")]
    pub mesos_state_file: Option<PathBuf>,

    /// Off by default. Instead of polling the local agent, follow a Mesos master's
    /// operator-API event stream at this endpoint (e.g. http://leader.mesos:5050/api/v1):
    /// one `POST {"type":"SUBSCRIBE"}` whose answer streams every change as it happens.
    /// The master reports every agent's tasks; only those of the agent at --agent-ip count.
    /// A broken stream, or one silent for 3 of the master's heartbeat intervals, is
    /// reconnected with the poll backoff (doubling from --mesos-poll-interval, up to 60 s)
    /// and resynced from the master's full state; meanwhile the last good state stays.
    /// --mesos-timeout bounds connecting and the wait for the first event;
    /// --mesos-auth-token-file and --mesos-ca-file apply. Excludes --mesos-url and
    /// --mesos-state-file.
    #[arg(
        long,
        env = "MINUTEMAN_MESOS_SUBSCRIBE_URL",
        value_name = "URL",
        conflicts_with_all = ["mesos_url", "mesos_state_file"]
    )]
    pub mesos_subscribe_url: Option<String>,

    /// How often the Mesos state is read (with --mesos-subscribe-url: the base of the
    /// reconnect backoff). [default: 2s]
    #[arg(long, env = "MINUTEMAN_MESOS_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration_opt")]
    pub mesos_poll_interval: Option<Duration>,

    /// HTTP timeout of one Mesos request. [default: 5s]
    #[arg(long, env = "MINUTEMAN_MESOS_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration_opt")]
    pub mesos_timeout: Option<Duration>,

    /// A file holding the token sent to Mesos as `Authorization: token=...`.
    #[arg(long, env = "MINUTEMAN_MESOS_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub mesos_auth_token_file: Option<PathBuf>,

    /// A PEM file of CA certificates trusted for an https Mesos URL.
    #[arg(long, env = "MINUTEMAN_MESOS_CA_FILE", value_name = "FILE")]
    pub mesos_ca_file: Option<PathBuf>,

    /// Where VIP traffic is balanced: `nftables` (one private table, `inet minuteman`),
    /// `ipvs` (the kernel's IPVS over generic netlink: needs the ip_vs and ip_vs_wlc
    /// modules; VIP addresses go on a dummy interface; sets net.ipv4.vs.conntrack=1 and
    /// net.ipv4.vs.expire_nodest_conn=1) or `none` (compute and log only).
    /// [default: nftables]
    #[arg(long, env = "MINUTEMAN_DATAPLANE", value_enum)]
    pub dataplane: Option<DataPlaneArg>,

    /// With `--dataplane ipvs`: the dummy interface that holds the VIP addresses, created
    /// if absent. IPVS services at its addresses or in the named-VIP ranges (11.0.0.0/8,
    /// fd01:c::/64) are minuteman's; no other IPVS service is touched. [default: minuteman]
    #[arg(long, env = "MINUTEMAN_IPVS_INTERFACE", value_name = "NAME")]
    pub ipvs_interface: Option<String>,

    /// With `--dataplane ipvs`: how replies from backends come back through this host.
    /// `iptables` adds the rule `-t nat POSTROUTING -m ipvs --ipvs --vdir ORIGINAL
    /// --vmethod MASQ -j MASQUERADE` (and its ip6tables twin) unless present; `none`
    /// leaves it to the operator. [default: iptables]
    #[arg(long, env = "MINUTEMAN_IPVS_MASQUERADE", value_enum)]
    pub ipvs_masquerade: Option<MasqueradeArg>,

    /// The nftables table minuteman owns. [default: minuteman]
    #[arg(long, env = "MINUTEMAN_NFT_TABLE", value_name = "NAME")]
    pub nft_table: Option<String>,

    /// How often the kernel is compared with what minuteman committed, and restored if
    /// something else changed it. [default: 10s]
    #[arg(long, env = "MINUTEMAN_RECONCILE_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration_opt")]
    pub reconcile_interval: Option<Duration>,

    /// How long a host may stay unreachable before every agent forgets it: its record,
    /// its backends and the named-VIP addresses only it used. A late copy of a forgotten
    /// record is refused for as long again; a host that comes back is taken back at once.
    /// [default: 10m]
    #[arg(long, env = "MINUTEMAN_GC_HORIZON", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration_opt")]
    pub gc_horizon: Option<Duration>,

    /// How new versions of the host records spread: `flood` (to every active neighbour;
    /// about 2.6 copies of each version reach a host) or `tree` (Plumtree: pushed along a
    /// tree of links and announced on the others; about 1.5 copies, a little slower
    /// detection; see docs/scale/notes.md). Every agent of a cluster should use the same.
    /// [default: flood]
    #[arg(long, env = "MINUTEMAN_BROADCAST", value_enum)]
    pub broadcast: Option<BroadcastArg>,

    /// Serve DNS on this address, UDP and TCP (repeat for more; e.g. `127.0.0.1:53`): every
    /// named VIP the local kernel holds as `NAME.FRAMEWORK.ZONE` (A and AAAA, TTL 5 s),
    /// NXDOMAIN for unknown names inside the zone, and REFUSED (or a relay to
    /// `--dns-upstream`) outside it. [default: no DNS]
    #[arg(
        long = "dns-listen",
        env = "MINUTEMAN_DNS_LISTEN",
        value_name = "IP:PORT",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub dns_listen: Vec<SocketAddr>,

    /// The zone of named VIPs. [default: l4lb.thisdcos.directory]
    #[arg(long, env = "MINUTEMAN_DNS_ZONE", value_name = "ZONE")]
    pub dns_zone: Option<String>,

    /// The zone of task records in the style of Mesos-DNS (`TASK.FRAMEWORK.ZONE` A/AAAA,
    /// `_TASK._tcp.FRAMEWORK.ZONE` SRV), answered for the whole cluster; `none` leaves
    /// tasks out of DNS (every agent still reports its own tasks). [default: mesos]
    #[arg(long, env = "MINUTEMAN_DNS_TASKS_ZONE", value_name = "ZONE|none")]
    pub dns_tasks_zone: Option<String>,

    /// Relay queries for names outside the zone to this server (IP or IP:PORT, port 53 by
    /// default), instead of refusing them; relays that time out (2 s) or fail are answered
    /// SERVFAIL and counted.
    #[arg(long, env = "MINUTEMAN_DNS_UPSTREAM", value_name = "IP[:PORT]", value_parser = parse_dns_addr)]
    #[serde(default, deserialize_with = "de_dns_addr_opt")]
    pub dns_upstream: Option<SocketAddr>,

    /// The HTTP API (`/v1/vips`, `/v1/members`, `/v1/state`, `/metrics`, `/healthz`).
    /// [default: 127.0.0.1:61421]
    #[arg(long, env = "MINUTEMAN_API_LISTEN", value_name = "IP:PORT")]
    pub api_listen: Option<SocketAddr>,

    /// Where the epoch and this node's last record are kept across restarts.
    /// [default: /var/lib/minuteman]
    #[arg(long, env = "MINUTEMAN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The cluster key: the file's contents, surrounding whitespace ignored, at least 32
    /// bytes (e.g. `openssl rand -hex 32 > key`). Every frame between agents carries an
    /// HMAC-SHA256 under it; the same file on every host.
    #[arg(long, env = "MINUTEMAN_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// The previous cluster key, still accepted (not used to send) while a new key is
    /// rolled out.
    #[arg(long, env = "MINUTEMAN_PREVIOUS_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub previous_cluster_key_file: Option<PathBuf>,

    /// Run without frame authentication: any host that can reach the peer port can then
    /// inject membership and backends. Must be said explicitly.
    #[arg(long, env = "MINUTEMAN_INSECURE", conflicts_with = "cluster_key_file")]
    #[serde(default)]
    pub insecure: bool,

    /// Log lines for people (`human`) or one JSON object per line (`json`). The level comes
    /// from `RUST_LOG` (e.g. `RUST_LOG=minuteman=debug`). [default: human]
    #[arg(long, env = "MINUTEMAN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The validated configuration the agent runs with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub contacts: Vec<SocketAddr>,
    pub agent_ip: IpAddr,
    pub mesos: MesosOrigin,
    pub mesos_poll_interval: Duration,
    pub mesos_timeout: Duration,
    pub mesos_auth_token: Option<String>,
    pub mesos_ca_file: Option<PathBuf>,
    pub dataplane: DataPlaneKind,
    pub nft_table: String,
    pub ipvs_interface: String,
    pub ipvs_masquerade: Masquerade,
    pub dns_listen: Vec<SocketAddr>,
    pub dns_zone: String,
    /// `None`: task records are not served.
    pub dns_tasks_zone: Option<String>,
    pub dns_upstream: Option<SocketAddr>,
    pub reconcile_interval: Duration,
    pub gc_horizon: Duration,
    pub broadcast: minuteman_core::Broadcast,
    pub api_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub auth: FrameAuth,
    pub log_format: LogFormat,
}

/// Where the Mesos state comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MesosOrigin {
    /// An agent's `/state`, polled.
    Url(String),
    /// A state file, watched.
    File(PathBuf),
    /// A master's operator API, followed as a `SUBSCRIBE` stream.
    Subscribe(String),
    /// A document set in this process (programs that embed the agent: the madsim tests);
    /// never from the command line.
    Injected(crate::mesos_source::InjectedMesos),
}

/// A configuration the agent cannot run with; names the option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("--listen or --agent-ip is required: the agent needs this host's address")]
    NoAddress,
    #[error("--listen {0} is not a concrete address: it names this node to its peers")]
    UnspecifiedListen(SocketAddr),
    #[error("give --cluster-key-file FILE (e.g. `openssl rand -hex 32 > FILE`), or --insecure to run without frame authentication")]
    NoAuth,
    #[error("--cluster-key-file and --insecure exclude each other")]
    AuthConflict,
    #[error("--mesos-url, --mesos-state-file and --mesos-subscribe-url exclude each other")]
    MesosConflict,
    #[error("cannot read {option} {path}: {source}")]
    ReadOption {
        option: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{option} {path}: {message}")]
    BadKey {
        option: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("--dns-zone {0:?} is not a DNS zone (labels of letters, digits and '-')")]
    BadZone(String),
    #[error("the zones {0:?} (named VIPs) and {1:?} (tasks) overlap: one would hide the other")]
    OverlappingZones(String, String),
    #[error("--ipvs-interface {0:?} is not an interface name (1 to 15 bytes, no '/', ':' or whitespace)")]
    BadInterface(String),
    #[error("{option} must be positive")]
    ZeroDuration { option: &'static str },
}

/// `IP` or `IP:PORT`, port 61420 by default.
pub fn parse_peer_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PEER_PORT))
        .map_err(|_| format!("`{s}` is not an IP address or IP:PORT"))
}

/// `250ms`, `2s`, `1m` (humantime).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e}"))
}

fn de_peer_addr_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_peer_addr(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn de_peer_addrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    v.iter()
        .map(|s| parse_peer_addr(s).map_err(serde::de::Error::custom))
        .collect()
}

fn de_duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl AgentArgs {
    /// Fills what the flags and environment left unset from `file`.
    fn merge_file(mut self, file: AgentArgs) -> AgentArgs {
        macro_rules! fill {
            ($($field:ident),*) => { $( if self.$field.is_none() { self.$field = file.$field; } )* };
        }
        fill!(
            listen,
            agent_ip,
            mesos_url,
            mesos_state_file,
            mesos_subscribe_url,
            mesos_poll_interval,
            mesos_timeout,
            mesos_auth_token_file,
            mesos_ca_file,
            dataplane,
            nft_table,
            ipvs_interface,
            ipvs_masquerade,
            dns_zone,
            dns_tasks_zone,
            dns_upstream,
            reconcile_interval,
            gc_horizon,
            broadcast,
            api_listen,
            state_dir,
            cluster_key_file,
            previous_cluster_key_file,
            log_format
        );
        if self.contact.is_empty() {
            self.contact = file.contact;
        }
        if self.dns_listen.is_empty() {
            self.dns_listen = file.dns_listen;
        }
        self.insecure |= file.insecure;
        self
    }
}

fn read_key(option: &'static str, path: &Path) -> Result<ClusterKey, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::ReadOption {
        option,
        path: path.to_owned(),
        source,
    })?;
    ClusterKey::from_file_contents(&bytes).map_err(|e| ConfigError::BadKey {
        option,
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// `IP` or `IP:PORT`, port 53 by default.
fn parse_dns_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not IP or IP:PORT"))
}

fn de_dns_addr_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_dns_addr(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// A DNS zone: dot-separated labels of letters, digits and `-`, each 1 to 63 bytes.
fn dns_zone(zone: String) -> Result<String, ConfigError> {
    let normalized = crate::dns::table::normalize_zone(&zone);
    let ok = !normalized.is_empty()
        && normalized.len() <= 200
        && normalized.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(normalized)
    } else {
        Err(ConfigError::BadZone(zone))
    }
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ less the NUL), none of `/`, `:`,
/// whitespace, not `.` or `..`.
fn interface_name(name: String) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(name)
    } else {
        Err(ConfigError::BadInterface(name))
    }
}

fn positive(option: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroDuration { option })
    } else {
        Ok(d)
    }
}

impl AgentConfig {
    /// Reads the `--config` file if any, merges it under the flags and checks the result.
    pub fn resolve(args: AgentArgs) -> Result<AgentConfig, ConfigError> {
        let args = match args.config.clone() {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                let file: AgentArgs =
                    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                args.merge_file(file)
            }
            None => args,
        };
        AgentConfig::from_args(args)
    }

    fn from_args(a: AgentArgs) -> Result<AgentConfig, ConfigError> {
        let vip_zone = dns_zone(
            a.dns_zone
                .clone()
                .unwrap_or_else(|| crate::dns::table::DEFAULT_ZONE.to_owned()),
        )?;
        let tasks_zone = match a.dns_tasks_zone.as_deref() {
            Some("none") => None,
            other => Some(dns_zone(
                other
                    .unwrap_or(crate::dns::table::DEFAULT_TASKS_ZONE)
                    .to_owned(),
            )?),
        };
        if let Some(tasks) = &tasks_zone {
            let inside = |a: &str, b: &str| a == b || a.ends_with(&format!(".{b}"));
            if inside(tasks, &vip_zone) || inside(&vip_zone, tasks) {
                return Err(ConfigError::OverlappingZones(vip_zone, tasks.clone()));
            }
        }
        let listen = match (a.listen, a.agent_ip) {
            (Some(listen), _) => listen,
            (None, Some(ip)) => SocketAddr::new(ip, DEFAULT_PEER_PORT),
            (None, None) => return Err(ConfigError::NoAddress),
        };
        if listen.ip().is_unspecified() {
            return Err(ConfigError::UnspecifiedListen(listen));
        }
        let agent_ip = a.agent_ip.unwrap_or(listen.ip());
        let mesos = match (a.mesos_url, a.mesos_state_file, a.mesos_subscribe_url) {
            (Some(url), None, None) => MesosOrigin::Url(url),
            (None, Some(file), None) => MesosOrigin::File(file),
            (None, None, Some(url)) => MesosOrigin::Subscribe(url),
            (None, None, None) => MesosOrigin::Url(match agent_ip {
                IpAddr::V4(ip) => format!("http://{ip}:5051/state"),
                IpAddr::V6(ip) => format!("http://[{ip}]:5051/state"),
            }),
            _ => return Err(ConfigError::MesosConflict),
        };
        let auth = match (a.cluster_key_file, a.insecure) {
            (Some(_), true) => return Err(ConfigError::AuthConflict),
            (None, false) => return Err(ConfigError::NoAuth),
            (None, true) => FrameAuth::Insecure,
            (Some(current), false) => FrameAuth::Keys {
                current: read_key("--cluster-key-file", &current)?,
                previous: a
                    .previous_cluster_key_file
                    .as_deref()
                    .map(|p| read_key("--previous-cluster-key-file", p))
                    .transpose()?,
            },
        };
        let mesos_auth_token = a
            .mesos_auth_token_file
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|source| ConfigError::ReadOption {
                        option: "--mesos-auth-token-file",
                        path,
                        source,
                    })
            })
            .transpose()?;
        let mut contacts = a.contact;
        contacts.sort_unstable();
        contacts.dedup();
        Ok(AgentConfig {
            listen,
            contacts,
            agent_ip,
            mesos,
            mesos_poll_interval: positive(
                "--mesos-poll-interval",
                a.mesos_poll_interval.unwrap_or(Duration::from_secs(2)),
            )?,
            mesos_timeout: positive(
                "--mesos-timeout",
                a.mesos_timeout.unwrap_or(Duration::from_secs(5)),
            )?,
            mesos_auth_token,
            mesos_ca_file: a.mesos_ca_file,
            dataplane: a.dataplane.unwrap_or(DataPlaneArg::Nftables).into(),
            nft_table: a.nft_table.unwrap_or_else(|| "minuteman".to_owned()),
            ipvs_interface: interface_name(
                a.ipvs_interface
                    .unwrap_or_else(|| crate::dataplane::ipvs::link::DEFAULT_NAME.to_owned()),
            )?,
            ipvs_masquerade: a.ipvs_masquerade.unwrap_or(MasqueradeArg::Iptables).into(),
            dns_listen: a.dns_listen,
            dns_zone: vip_zone,
            dns_tasks_zone: tasks_zone,
            dns_upstream: a.dns_upstream,
            reconcile_interval: positive(
                "--reconcile-interval",
                a.reconcile_interval.unwrap_or(Duration::from_secs(10)),
            )?,
            gc_horizon: positive(
                "--gc-horizon",
                a.gc_horizon
                    .unwrap_or(minuteman_core::RecordsConfig::default().gc_horizon),
            )?,
            broadcast: a.broadcast.unwrap_or(BroadcastArg::Flood).into(),
            api_listen: a
                .api_listen
                .unwrap_or_else(|| DEFAULT_API_LISTEN.parse().expect("constant")),
            state_dir: a.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            auth,
            log_format: a.log_format.unwrap_or(LogFormat::Human),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure() -> AgentArgs {
        AgentArgs {
            insecure: true,
            ..AgentArgs::default()
        }
    }

    #[test]
    fn peer_addresses_default_to_the_peer_port() {
        assert_eq!(
            parse_peer_addr("10.0.0.1").unwrap(),
            "10.0.0.1:61420".parse().unwrap()
        );
        assert_eq!(
            parse_peer_addr("10.0.0.1:7").unwrap(),
            "10.0.0.1:7".parse().unwrap()
        );
        assert_eq!(
            parse_peer_addr("[fd00::1]").unwrap(),
            "[fd00::1]:61420".parse().unwrap()
        );
        assert_eq!(
            parse_peer_addr("fd00::1").unwrap(),
            "[fd00::1]:61420".parse().unwrap()
        );
        assert!(parse_peer_addr("web").is_err());
    }

    #[test]
    fn the_agent_ip_gives_the_listen_address_and_the_mesos_url() {
        let cfg = AgentConfig::from_args(AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            ..insecure()
        })
        .unwrap();
        assert_eq!(cfg.listen, "10.0.0.5:61420".parse().unwrap());
        assert_eq!(
            cfg.mesos,
            MesosOrigin::Url("http://10.0.0.5:5051/state".into())
        );
        assert_eq!(cfg.api_listen, "127.0.0.1:61421".parse().unwrap());
        assert_eq!(cfg.dataplane, DataPlaneKind::Nftables);
    }

    #[test]
    fn the_dns_options_parse_and_refuse_bad_zones() {
        assert_eq!(
            parse_dns_addr("10.0.0.2").unwrap(),
            "10.0.0.2:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_addr("[fd00::2]").unwrap(),
            "[fd00::2]:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_addr("10.0.0.2:5353").unwrap(),
            "10.0.0.2:5353".parse().unwrap()
        );
        assert!(parse_dns_addr("resolver.example").is_err());
        let base = AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            ..insecure()
        };
        let cfg = AgentConfig::from_args(base.clone()).unwrap();
        assert_eq!(cfg.dns_zone, "l4lb.thisdcos.directory");
        assert!(cfg.dns_listen.is_empty() && cfg.dns_upstream.is_none());
        let cfg = AgentConfig::from_args(AgentArgs {
            dns_zone: Some("VIPs.Example.".into()),
            ..base.clone()
        })
        .unwrap();
        assert_eq!(cfg.dns_zone, "vips.example");
        assert_eq!(
            AgentConfig::from_args(base.clone())
                .unwrap()
                .dns_tasks_zone
                .as_deref(),
            Some("mesos")
        );
        for (tasks, want) in [("Tasks.Example", Some("tasks.example")), ("none", None)] {
            let cfg = AgentConfig::from_args(AgentArgs {
                dns_tasks_zone: Some(tasks.into()),
                ..base.clone()
            })
            .unwrap();
            assert_eq!(cfg.dns_tasks_zone.as_deref(), want);
        }
        for (vips, tasks) in [
            ("mesos", "mesos"),
            ("l4lb.mesos", "mesos"),
            ("vips", "x.vips"),
        ] {
            let args = AgentArgs {
                dns_zone: Some(vips.into()),
                dns_tasks_zone: Some(tasks.into()),
                ..base.clone()
            };
            assert!(
                matches!(
                    AgentConfig::from_args(args),
                    Err(ConfigError::OverlappingZones(..))
                ),
                "{vips} {tasks}"
            );
        }
        for bad in ["", ".", "a..b", "under_score.x", &"x".repeat(64)] {
            let args = AgentArgs {
                dns_zone: Some(bad.to_owned()),
                ..base.clone()
            };
            assert!(
                matches!(AgentConfig::from_args(args), Err(ConfigError::BadZone(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_ipvs_options_default_and_refuse_bad_interface_names() {
        let base = AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            dataplane: Some(DataPlaneArg::Ipvs),
            ..insecure()
        };
        let cfg = AgentConfig::from_args(base.clone()).unwrap();
        assert_eq!(cfg.dataplane, DataPlaneKind::Ipvs);
        assert_eq!(cfg.ipvs_interface, "minuteman");
        assert_eq!(cfg.ipvs_masquerade, Masquerade::Iptables);
        for bad in ["", "a/b", "a b", "sixteen-bytes-xx", "..", "eth0:1"] {
            let args = AgentArgs {
                ipvs_interface: Some(bad.into()),
                ..base.clone()
            };
            assert!(
                matches!(
                    AgentConfig::from_args(args),
                    Err(ConfigError::BadInterface(_))
                ),
                "{bad:?}"
            );
        }
        let args = AgentArgs {
            ipvs_interface: Some("mm-vips".into()),
            ipvs_masquerade: Some(MasqueradeArg::None),
            ..base
        };
        let cfg = AgentConfig::from_args(args).unwrap();
        assert_eq!(
            (cfg.ipvs_interface.as_str(), cfg.ipvs_masquerade),
            ("mm-vips", Masquerade::None)
        );
    }

    #[test]
    fn refuses_what_it_cannot_run_with() {
        assert!(matches!(
            AgentConfig::from_args(insecure()),
            Err(ConfigError::NoAddress)
        ));
        let unspecified = AgentArgs {
            listen: Some("0.0.0.0:61420".parse().unwrap()),
            ..insecure()
        };
        assert!(matches!(
            AgentConfig::from_args(unspecified),
            Err(ConfigError::UnspecifiedListen(_))
        ));
        let no_auth = AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            ..AgentArgs::default()
        };
        assert!(matches!(
            AgentConfig::from_args(no_auth),
            Err(ConfigError::NoAuth)
        ));
        let short_key = std::env::temp_dir().join(format!("mm-short-key-{}", std::process::id()));
        std::fs::write(&short_key, "  too short \n").unwrap();
        let bad_key = AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            cluster_key_file: Some(short_key.clone()),
            ..AgentArgs::default()
        };
        let err = AgentConfig::from_args(bad_key).unwrap_err();
        std::fs::remove_file(&short_key).unwrap();
        assert!(matches!(err, ConfigError::BadKey { .. }), "{err}");
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../../../dist/agent.toml.example");
        let args: AgentArgs = toml::from_str(text).expect("dist/agent.toml.example parses");
        assert_eq!(args.contact.len(), 3);
        assert_eq!(args.dataplane, Some(DataPlaneArg::Nftables));
        assert_eq!(
            args.cluster_key_file.as_deref(),
            Some(Path::new("/etc/minuteman/cluster.key"))
        );
        assert_eq!(args.mesos_subscribe_url, None, "off by default");

        // The commented SUBSCRIBE line, switched on, is a valid config.
        let key = "# mesos-subscribe-url = ";
        assert_eq!(text.matches(key).count(), 1, "the example shows {key:?}");
        let on = text.replace(key, "mesos-subscribe-url = ");
        let args: AgentArgs = toml::from_str(&on).unwrap();
        let cfg = AgentConfig::from_args(AgentArgs {
            cluster_key_file: None,
            insecure: true,
            ..args
        })
        .unwrap();
        assert_eq!(
            cfg.mesos,
            MesosOrigin::Subscribe("http://leader.mesos:5050/api/v1".into())
        );
    }

    #[test]
    fn one_mesos_origin_at_most() {
        let base = || AgentArgs {
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            ..insecure()
        };
        let subscribe = AgentConfig::from_args(AgentArgs {
            mesos_subscribe_url: Some("http://m:5050/api/v1".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(
            subscribe.mesos,
            MesosOrigin::Subscribe("http://m:5050/api/v1".into())
        );
        let both = [
            AgentArgs {
                mesos_subscribe_url: Some("http://m:5050/api/v1".into()),
                mesos_url: Some("http://a:5051/state".into()),
                ..base()
            },
            AgentArgs {
                mesos_subscribe_url: Some("http://m:5050/api/v1".into()),
                mesos_state_file: Some("/x".into()),
                ..base()
            },
            AgentArgs {
                mesos_url: Some("http://a:5051/state".into()),
                mesos_state_file: Some("/x".into()),
                ..base()
            },
        ];
        for args in both {
            assert!(matches!(
                AgentConfig::from_args(args),
                Err(ConfigError::MesosConflict)
            ));
        }
        // A flag and a file that name different origins conflict too.
        let file: AgentArgs =
            toml::from_str("mesos-subscribe-url = \"http://m:5050/api/v1\"").unwrap();
        let flags = AgentArgs {
            mesos_url: Some("http://a:5051/state".into()),
            ..base()
        };
        assert!(matches!(
            AgentConfig::from_args(flags.merge_file(file)),
            Err(ConfigError::MesosConflict)
        ));
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset() {
        let file: AgentArgs = toml::from_str(
            r#"
            listen = "10.0.0.5"
            contact = ["10.0.0.6", "10.0.0.7:9000"]
            mesos-poll-interval = "500ms"
            gc-horizon = "2m"
            broadcast = "tree"
            dataplane = "none"
            insecure = true
            "#,
        )
        .unwrap();
        let flags = AgentArgs {
            dataplane: Some(DataPlaneArg::Nftables),
            ..AgentArgs::default()
        };
        let cfg = AgentConfig::from_args(flags.merge_file(file)).unwrap();
        assert_eq!(cfg.listen, "10.0.0.5:61420".parse().unwrap());
        assert_eq!(cfg.contacts.len(), 2);
        assert_eq!(cfg.mesos_poll_interval, Duration::from_millis(500));
        assert_eq!(cfg.gc_horizon, Duration::from_secs(120));
        assert_eq!(cfg.broadcast, minuteman_core::Broadcast::Tree);
        assert_eq!(cfg.dataplane, DataPlaneKind::Nftables, "the flag wins");
        let zero = AgentArgs {
            gc_horizon: Some(Duration::ZERO),
            agent_ip: Some("10.0.0.5".parse().unwrap()),
            ..insecure()
        };
        assert!(matches!(
            AgentConfig::from_args(zero),
            Err(ConfigError::ZeroDuration {
                option: "--gc-horizon"
            })
        ));
        assert!(
            toml::from_str::<AgentArgs>("lisen = \"10.0.0.5\"").is_err(),
            "typos are errors"
        );
    }
}
