//! `cluster.toml`: the host cluster's configuration, identical on every host.
//!
//! Parsing keeps the source text so every problem can be reported with the file, the
//! line and the key it concerns. [`ClusterConfig::load`] returns either a validated
//! configuration or every problem found at once, so `hvctl config check` can list them
//! all in one pass.

mod fencing;
pub mod guest;
mod hypervisor;
mod keyfile;
mod link_members;
mod load;
mod locate;
mod rules;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use fencing::{DeviceKind, FenceDevice, FencingSection};
pub use hypervisor::{
    DoubleRunPolicy, HaDomainEntry, HypervisorSection, MigrationDomainEntry, MigrationSection,
    VmHaSection,
};
pub use keyfile::{key_mode_is_private, read_key_file, KeyFileError, KEY_MODE_OPEN_BITS};
pub use link_members::valid_link_name;
pub use load::Loaded;
pub use locate::{display_path, line_of, Seg};
use rules::Problems;

/// Node identifier of a host, unique in the cluster, at least 1.
pub type NodeId = u32;

/// Default heartbeat interval.
pub const DEFAULT_INTERVAL_MS: u64 = 200;
/// Default silence after which a host is Suspect.
pub const DEFAULT_SUSPECT_AFTER_MS: u64 = 800;
/// Default silence after which a host is Failed.
pub const DEFAULT_DEAD_AFTER_MS: u64 = 1500;
/// Default heartbeat UDP port of an interconnect.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 5420;
/// Default fence_kdump notice port.
pub const DEFAULT_KDUMP_PORT: u16 = 7410;
/// Default admin socket of the host agent.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/hvcluster/hostd.sock";
/// Default state directory (journal, incarnation counter).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hvcluster";
/// Default pressure source of the load watchdog.
pub const DEFAULT_PSI_SOURCE: &str = "/proc/pressure/cpu";
/// Smallest accepted cluster key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// The whole host cluster configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `[cluster]`: name, key, state directory.
    pub cluster: ClusterSection,
    /// `[heartbeat]`: interval and failure thresholds.
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    /// `[quorum]`: vote rules.
    #[serde(default)]
    pub quorum: QuorumSection,
    /// `[[interconnect]]`: the networks heartbeats travel on.
    #[serde(rename = "interconnect", default)]
    pub interconnects: Vec<Interconnect>,
    /// `[[host]]`: the hypervisors of the cluster.
    #[serde(rename = "host", default)]
    pub hosts: Vec<HostEntry>,
    /// `[kdump]`: the panic-notice listener.
    #[serde(default)]
    pub kdump: KdumpSection,
    /// `[load_watchdog]`: this host's own lateness and pressure monitor.
    #[serde(default)]
    pub load_watchdog: WatchdogSection,
    /// `[admin]`: the local admin socket.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[fencing]`: retry and race timing.
    #[serde(default)]
    pub fencing: FencingSection,
    /// `[[fence_device]]`: the devices hosts' fence levels name.
    #[serde(rename = "fence_device", default)]
    pub fence_devices: Vec<FenceDevice>,
    /// The host link: where guest agents connect.
    #[serde(default)]
    pub host_link: HostLinkListenSection,
    /// Guest clusters whose guests may link to this cluster's hosts.
    #[serde(rename = "guest_cluster", default)]
    pub guest_clusters: Vec<GuestClusterEntry>,
    /// How the host agent controls its guests.
    #[serde(default)]
    pub hypervisor: HypervisorSection,
    /// `[vm_ha]`: domains restarted on the surviving hosts when their host is fenced.
    #[serde(default)]
    pub vm_ha: VmHaSection,
    /// `[migration]`: how domains move between hosts.
    #[serde(default)]
    pub migration: MigrationSection,
    /// `[[application]]`: host-side userApplications (e.g. a VM made highly available
    /// with `hv-guest` resources), run by the host agents with the application engine.
    #[serde(rename = "application", default)]
    pub applications: Vec<guest::ApplicationConfig>,
}

/// Default TCP port of the host link.
pub const DEFAULT_HOST_LINK_PORT: u16 = 5410;

/// `[host_link]` of cluster.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostLinkListenSection {
    /// TCP port the host agent listens on, on each host's `link_address`.
    #[serde(default = "default_host_link_port")]
    pub port: u16,
    /// Time between two sends of an unacknowledged host-down notice, ms.
    #[serde(default = "default_notice_retry_ms")]
    pub notice_retry_ms: u64,
    /// Directory of the Unix sockets of this host's guests' virtio-serial channels
    /// (`DOMAIN.sock`, one per guest); the host agent connects to each. None: guests
    /// link over TCP only.
    #[serde(default)]
    pub channel_dir: Option<PathBuf>,
    /// Host-link connections held at once, registered or not; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Host-link connections held at once from one source address.
    #[serde(default = "default_max_per_source")]
    pub max_per_source: u32,
    /// Time a connection has to complete its registration, ms.
    #[serde(default = "default_register_timeout_ms")]
    pub register_timeout_ms: u64,
}

impl Default for HostLinkListenSection {
    fn default() -> Self {
        HostLinkListenSection {
            port: DEFAULT_HOST_LINK_PORT,
            notice_retry_ms: default_notice_retry_ms(),
            channel_dir: None,
            max_connections: default_max_connections(),
            max_per_source: default_max_per_source(),
            register_timeout_ms: default_register_timeout_ms(),
        }
    }
}

impl HostLinkListenSection {
    /// The connection caps.
    pub fn admission(&self) -> crate::link_admission::AdmissionLimits {
        crate::link_admission::AdmissionLimits {
            max_connections: self.max_connections,
            max_per_source: self.max_per_source,
        }
    }
}

fn default_host_link_port() -> u16 {
    DEFAULT_HOST_LINK_PORT
}
fn default_notice_retry_ms() -> u64 {
    500
}
fn default_max_connections() -> u32 {
    crate::link_admission::DEFAULT_MAX_CONNECTIONS
}
fn default_max_per_source() -> u32 {
    crate::link_admission::DEFAULT_MAX_PER_SOURCE
}
/// Default of `[host_link] register_timeout_ms`.
pub const DEFAULT_REGISTER_TIMEOUT_MS: u64 = 10_000;
fn default_register_timeout_ms() -> u64 {
    DEFAULT_REGISTER_TIMEOUT_MS
}

/// `[[guest_cluster]]` of cluster.toml: a guest cluster whose guests may link.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestClusterEntry {
    /// Its name, as `[cluster] name` of its guest.toml.
    pub name: String,
    /// Its key file (the guest.toml `key_file`): host-link frames are signed with it.
    pub key_file: PathBuf,
    /// `[[guest_cluster.member]]`: its guests, each with the domain it runs in. Only
    /// these may register, and only as themselves.
    #[serde(rename = "member", default)]
    pub members: Vec<GuestMember>,
}

/// `[[guest_cluster.member]]`: one guest of a guest cluster as the hosts know it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestMember {
    /// Node name, as `[[node]] name` of its guest.toml.
    pub node: String,
    /// Node id, as `[[node]] node_id` of its guest.toml.
    pub node_id: NodeId,
    /// The libvirt name of the domain it runs in (on virtio-serial, its channel socket
    /// is `DOMAIN.sock`): what a kill of this guest destroys.
    pub domain: String,
    /// Over TCP, the address its host links come from; none: any address.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name; frames of another cluster are dropped.
    pub name: String,
    /// File holding the shared cluster key (at least 16 bytes). Relative to the config file.
    pub key_file: PathBuf,
    /// Directory for the journal and the incarnation counter.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

/// `[heartbeat]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    /// Time between two heartbeats to each peer on each interconnect.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Silence on every interconnect after which a host is Suspect.
    #[serde(default = "default_suspect")]
    pub suspect_after_ms: u64,
    /// Silence on every interconnect after which a host is Failed (the dead time).
    #[serde(default = "default_dead")]
    pub dead_after_ms: u64,
    /// Heartbeats a returning host must send, without a gap, before it is Up again.
    #[serde(default = "default_rejoin_heartbeats")]
    pub rejoin_heartbeats: u32,
}

/// `[quorum]`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuorumSection {
    /// Two-node mode: one vote is quorate. Default: on when the cluster has two hosts.
    pub two_node: Option<bool>,
    /// No quorum until every host has been seen once since start. Default: on in two-node mode.
    pub wait_for_all: Option<bool>,
}

/// `[[interconnect]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Interconnect {
    /// Name hosts use in their `addresses` table.
    pub name: String,
    /// UDP port heartbeats use on this interconnect.
    #[serde(default = "default_hb_port")]
    pub port: u16,
}

/// `[[host]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Host name, as operators call it.
    pub name: String,
    /// Unique node id, at least 1.
    pub node_id: NodeId,
    /// Survival weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// One address per interconnect, by interconnect name.
    pub addresses: BTreeMap<String, IpAddr>,
    /// Extra source addresses its kdump kernel may send panic notices from.
    #[serde(default)]
    pub kdump_addresses: Vec<IpAddr>,
    /// Fence levels in the order they are tried; each names devices that must all
    /// succeed.
    #[serde(default)]
    pub fence_levels: Vec<Vec<String>>,
    /// Address the host agent accepts host links on (TCP); none: no TCP host link.
    #[serde(default)]
    pub link_address: Option<IpAddr>,
}

/// `[kdump]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KdumpSection {
    /// Listen for fence_kdump panic notices.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// UDP port of the notices.
    #[serde(default = "default_kdump_port")]
    pub port: u16,
    /// Address to listen on.
    #[serde(default = "default_any")]
    pub listen: IpAddr,
    /// How long a host named by a panic notice has to answer with an authenticated
    /// heartbeat before the notice counts, ms.
    #[serde(default = "default_kdump_probe")]
    pub probe_ms: u64,
}

/// `[load_watchdog]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    /// How often the watchdog wakes to measure its own lateness.
    #[serde(default = "default_wd_interval")]
    pub interval_ms: u64,
    /// Lateness at which this host reports itself slow.
    #[serde(default = "default_slow_lateness")]
    pub slow_lateness_ms: u64,
    /// Lateness at which this host reports itself hung.
    #[serde(default = "default_hung_lateness")]
    pub hung_lateness_ms: u64,
    /// A peer reported hung for this long is Failed(hung).
    #[serde(default = "default_hung_limit")]
    pub hung_limit_ms: u64,
    /// Pressure file (PSI format) read at each wake.
    #[serde(default = "default_psi_source")]
    pub psi_source: PathBuf,
    /// `some avg10` pressure at which this host reports itself slow.
    #[serde(default = "default_slow_psi")]
    pub slow_psi_percent: f64,
    /// SCHED_FIFO priority for the agent (0 disables the request).
    #[serde(default = "default_rt_priority")]
    pub realtime_priority: u8,
    /// Lock the agent's memory so paging never delays a heartbeat.
    #[serde(default = "default_true")]
    pub lock_memory: bool,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Path of the root-only admin socket.
    #[serde(default = "default_admin_socket")]
    pub socket: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_interval() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_suspect() -> u64 {
    DEFAULT_SUSPECT_AFTER_MS
}
fn default_dead() -> u64 {
    DEFAULT_DEAD_AFTER_MS
}
fn default_rejoin_heartbeats() -> u32 {
    3
}
fn default_hb_port() -> u16 {
    DEFAULT_HEARTBEAT_PORT
}
fn default_weight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_kdump_probe() -> u64 {
    crate::membership::DEFAULT_PANIC_PROBE.as_millis() as u64
}
fn default_kdump_port() -> u16 {
    DEFAULT_KDUMP_PORT
}
fn default_any() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_wd_interval() -> u64 {
    50
}
fn default_slow_lateness() -> u64 {
    100
}
fn default_hung_lateness() -> u64 {
    500
}
fn default_hung_limit() -> u64 {
    DEFAULT_DEAD_AFTER_MS
}
fn default_psi_source() -> PathBuf {
    PathBuf::from(DEFAULT_PSI_SOURCE)
}
fn default_slow_psi() -> f64 {
    80.0
}
fn default_rt_priority() -> u8 {
    10
}
fn default_admin_socket() -> PathBuf {
    PathBuf::from(DEFAULT_ADMIN_SOCKET)
}

impl Default for HeartbeatSection {
    fn default() -> Self {
        Self {
            interval_ms: DEFAULT_INTERVAL_MS,
            suspect_after_ms: DEFAULT_SUSPECT_AFTER_MS,
            dead_after_ms: DEFAULT_DEAD_AFTER_MS,
            rejoin_heartbeats: default_rejoin_heartbeats(),
        }
    }
}
impl Default for KdumpSection {
    fn default() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_KDUMP_PORT,
            listen: default_any(),
            probe_ms: default_kdump_probe(),
        }
    }
}
impl Default for WatchdogSection {
    fn default() -> Self {
        Self {
            interval_ms: default_wd_interval(),
            slow_lateness_ms: default_slow_lateness(),
            hung_lateness_ms: default_hung_lateness(),
            hung_limit_ms: default_hung_limit(),
            psi_source: default_psi_source(),
            slow_psi_percent: default_slow_psi(),
            realtime_priority: default_rt_priority(),
            lock_memory: true,
        }
    }
}
impl Default for AdminSection {
    fn default() -> Self {
        Self {
            socket: default_admin_socket(),
        }
    }
}

/// One problem in a configuration file: where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {key}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigProblem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line of the key, when it could be found.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `host[2].addresses.ic1`.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors {
    /// The problems, in file order where known.
    pub problems: Vec<ConfigProblem>,
}

/// A validated `cluster.toml` together with the cluster key it names.
pub type LoadedConfig = Loaded<ClusterConfig>;

impl load::ConfigFile for ClusterConfig {
    fn resolve_paths(&mut self, base: &Path) {
        load::resolve(base, &mut self.cluster.key_file);
        for g in &mut self.guest_clusters {
            load::resolve(base, &mut g.key_file);
        }
        for d in &mut self.fence_devices {
            if let Some(p) = d.password_file.as_mut() {
                load::resolve(base, p);
            }
        }
    }

    fn validate(&self, problems: &mut Problems<'_>) -> Option<Vec<u8>> {
        validate::validate(self, problems)
    }

    fn digest(&self) -> [u8; 16] {
        ClusterConfig::digest(self)
    }
}

impl ClusterConfig {
    /// Reads, parses and validates `path`, reading the key file it names.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        load::load(path)
    }

    /// Parses and validates `text` as if read from `path` (used for error locations and
    /// to resolve a relative `key_file`).
    pub fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigErrors> {
        load::load_str(path, text)
    }

    /// Digest of everything peers must agree on (hosts, interconnects, timings,
    /// applications).
    pub fn digest(&self) -> [u8; 16] {
        #[derive(Serialize)]
        struct Shared<'a> {
            name: &'a str,
            heartbeat: &'a HeartbeatSection,
            quorum: &'a QuorumSection,
            interconnects: &'a [Interconnect],
            hosts: &'a [HostEntry],
            hung_limit_ms: u64,
            applications: &'a [guest::ApplicationConfig],
        }
        let shared = Shared {
            name: &self.cluster.name,
            heartbeat: &self.heartbeat,
            quorum: &self.quorum,
            interconnects: &self.interconnects,
            hosts: &self.hosts,
            hung_limit_ms: self.load_watchdog.hung_limit_ms,
            applications: &self.applications,
        };
        load::digest_of(&shared)
    }

    /// The host entry called `name`.
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The fence device called `name`.
    pub fn fence_device(&self, name: &str) -> Option<&FenceDevice> {
        self.fence_devices.iter().find(|d| d.name == name)
    }

    /// The host entry with node id `id`.
    pub fn host_by_id(&self, id: NodeId) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.node_id == id)
    }

    /// Whether two-node rules apply (explicit, or two hosts configured).
    pub fn two_node(&self) -> bool {
        self.quorum.two_node.unwrap_or(self.hosts.len() == 2)
    }

    /// Whether quorum waits until every host was seen once.
    pub fn wait_for_all(&self) -> bool {
        self.quorum.wait_for_all.unwrap_or(self.two_node())
    }

    /// Identifier of the cluster carried in every frame (derived from its name).
    pub fn cluster_id(&self) -> u64 {
        cluster_id_of(&self.cluster.name)
    }
}

/// Cluster id derived from a cluster name, as carried in frames.
pub fn cluster_id_of(name: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests;
