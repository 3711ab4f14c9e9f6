//! `guest.toml`: a guest cluster's configuration, identical on every guest node of it.
//!
//! It names the guest cluster (nodes, addresses, key, timings), the link to the host
//! agent of the hypervisor the guest runs on, and the userApplications with their
//! resources. [`GuestConfig::load`] returns a validated configuration or every problem
//! found, each as `FILE:LINE: KEY: message`.

pub(crate) mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::load::{self, Loaded};
use super::rules::Problems;
use super::{ConfigErrors, HeartbeatSection, Interconnect, NodeId};

/// Default admin socket of the guest agent.
pub const DEFAULT_GUEST_ADMIN_SOCKET: &str = "/run/hvcluster/guestd.sock";
/// Default state directory of the guest agent.
pub const DEFAULT_GUEST_STATE_DIR: &str = "/var/lib/hvcluster-guest";
/// Default timeout of a resource's start, stop and check, seconds (the Cmdline default).
pub const DEFAULT_RESOURCE_TIMEOUT_S: u64 = 300;
/// Default time between two checks of a resource, seconds.
pub const DEFAULT_CHECK_INTERVAL_S: u64 = 10;
/// Default restarts of a failed application on its node before it switches.
pub const DEFAULT_RESTART_LIMIT: u32 = 0;
/// Default window the restart budget counts in, seconds.
pub const DEFAULT_RESTART_WINDOW_S: u64 = 600;
/// Default OCF_ROOT.
pub const DEFAULT_OCF_ROOT: &str = "/usr/lib/ocf";
/// Default host agent port the guest links to (used from the host link on).
pub const DEFAULT_HOST_LINK_PORT: u16 = 5410;

/// The whole guest cluster configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// `[cluster]`: name, key, state directory.
    pub cluster: GuestClusterSection,
    /// `[heartbeat]`: interval and failure thresholds of the guest heartbeats.
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    /// `[[interconnect]]`: the guest networks heartbeats travel on.
    #[serde(rename = "interconnect", default)]
    pub interconnects: Vec<Interconnect>,
    /// `[[node]]`: the guests of the cluster.
    #[serde(rename = "node", default)]
    pub nodes: Vec<GuestNode>,
    /// `[host_link]`: how this guest reaches its host agent.
    #[serde(default)]
    pub host_link: HostLinkSection,
    /// `[admin]`: the local admin socket.
    #[serde(default)]
    pub admin: GuestAdminSection,
    /// `[[application]]`: the userApplications.
    #[serde(rename = "application", default)]
    pub applications: Vec<ApplicationConfig>,
}

/// `[cluster]` of a guest cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestClusterSection {
    /// Guest cluster name; frames of another cluster are dropped.
    pub name: String,
    /// File holding the guest cluster key (at least 16 bytes). Relative to the config file.
    pub key_file: PathBuf,
    /// Directory for persistent faults, placements and the incarnation counter.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

/// `[[node]]`: one guest of the guest cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestNode {
    /// Node name, as operators call it.
    pub name: String,
    /// Unique node id, at least 1.
    pub node_id: NodeId,
    /// One address per interconnect, by interconnect name.
    pub addresses: BTreeMap<String, IpAddr>,
    /// The libvirt domain (name or UUID) this guest is; defaults to the node name.
    #[serde(default)]
    pub domain: Option<String>,
}

/// How the guest reaches the host agent of its hypervisor.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HostLinkTransport {
    /// No host link: a silent partner stays LEFTCLUSTER until an operator acts.
    #[default]
    None,
    /// TCP to the host agent (the lab).
    Tcp,
    /// AF_VSOCK to the host (CID 2).
    Vsock,
    /// A virtio-serial port (character device in the guest).
    VirtioSerial,
}

/// `[host_link]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostLinkSection {
    /// Transport to the host agent; `none` switches the link off.
    #[serde(default)]
    pub transport: HostLinkTransport,
    /// Host agent address for `tcp`.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Host agent port for `tcp` and `vsock`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Character device for `virtio-serial`.
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// The hosts' public key (`ed25519:` and 64 hex digits, printed by `hvctl config
    /// host-link-key`): what the host says is taken only when signed with it. Required
    /// with any transport but `none`.
    #[serde(default)]
    pub host_public_key: Option<String>,
}

impl HostLinkSection {
    /// The hosts' public key, when configured and valid (validation refuses a bad one).
    pub fn host_public_key(&self) -> Option<crate::hostseal::HostPublicKey> {
        self.host_public_key.as_deref().and_then(|k| k.parse().ok())
    }
}

/// `[admin]` of the guest agent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestAdminSection {
    /// Path of the root-only admin socket.
    #[serde(default = "default_admin_socket")]
    pub socket: PathBuf,
    /// A virtio-serial port (e.g. `/dev/virtio-ports/org.hvcluster.admin`) that also
    /// serves admin requests, so that `hvctl --socket` on the host end's socket reaches
    /// this agent from the hypervisor. None: the socket only.
    #[serde(default)]
    pub port: Option<PathBuf>,
}

/// What may make an application switch to another node by itself (`AutoSwitchOver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchTrigger {
    /// The node it runs on is DOWN (proved dead).
    HostFailure,
    /// One of its resources failed and could not be restarted here.
    ResourceFailure,
    /// The agent on its node is shut down.
    ShutDown,
}

/// When a node that does not run an application brings it to Standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StandbyTransition {
    /// When the application is started on its primary node.
    Startup,
    /// When the application switched away from this node.
    SwitchRequest,
}

/// `[[application]]`: a userApplication.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    /// Application name.
    pub name: String,
    /// Nodes it may run on, most preferred first.
    pub nodes: Vec<String>,
    /// Bring it Online when the cluster starts (AutoStartUp).
    #[serde(default = "default_true")]
    pub auto_start_up: bool,
    /// What switches it by itself (AutoSwitchOver); empty means No.
    #[serde(default = "default_switch_over")]
    pub auto_switch_over: Vec<SwitchTrigger>,
    /// A fault survives an agent restart until cleared (PersistentFault).
    #[serde(default)]
    pub persistent_fault: bool,
    /// When a stop fails, have the faulted node killed and go on (HaltFlag).
    #[serde(default)]
    pub halt_flag: bool,
    /// Start where it last ran rather than on the first node (OnlinePriority).
    #[serde(default)]
    pub online_priority: bool,
    /// When other nodes bring it to Standby (StandbyTransitions).
    #[serde(default)]
    pub standby_transitions: Vec<StandbyTransition>,
    /// Restarts on the same node within `restart_window_s` before switching.
    #[serde(default = "default_restart_limit")]
    pub restart_limit: u32,
    /// Window the restart budget counts in, seconds.
    #[serde(default = "default_restart_window")]
    pub restart_window_s: u64,
    /// Resources, in dependency order: started first to last, stopped last to first.
    #[serde(rename = "resource", default)]
    pub resources: Vec<ResourceConfig>,
}

/// `[[application.resource]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Resource name, unique in its application.
    pub name: String,
    /// What runs it: `cmdline`, `ocf` or `vip`.
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    /// `cmdline`: the start command (run through `/bin/sh -c`).
    #[serde(default)]
    pub start: Option<String>,
    /// `cmdline`: the stop command; must succeed when already stopped.
    #[serde(default)]
    pub stop: Option<String>,
    /// `cmdline`: the check command (not with NULLDETECTOR).
    #[serde(default)]
    pub check: Option<String>,
    /// `cmdline`: ALLEXITCODES, NULLDETECTOR, STANDBYCAPABLE, AUTORECOVER.
    #[serde(default)]
    pub flags: Vec<CmdlineFlag>,
    /// `ocf`: the agent as `PROVIDER/TYPE` (e.g. `heartbeat/Dummy`).
    #[serde(default)]
    pub agent: Option<String>,
    /// `ocf`: OCF_ROOT (default `/usr/lib/ocf`).
    #[serde(default)]
    pub ocf_root: Option<PathBuf>,
    /// `ocf`: parameters, passed as `OCF_RESKEY_<name>`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `vip`: the address with its prefix length, e.g. `198.18.32.200/24`.
    #[serde(default)]
    pub address: Option<String>,
    /// `vip`: the interface it is brought up on.
    #[serde(default)]
    pub interface: Option<String>,
    /// Timeout of the start, seconds (default 300; OCF: the agent's meta-data).
    #[serde(default)]
    pub start_timeout_s: Option<u64>,
    /// Timeout of the stop, seconds (default 300; OCF: the agent's meta-data).
    #[serde(default)]
    pub stop_timeout_s: Option<u64>,
    /// Timeout of a check, seconds (default 300; OCF: the agent's meta-data).
    #[serde(default)]
    pub check_timeout_s: Option<u64>,
    /// Time between two checks, seconds (default 10; OCF: the monitor interval of its
    /// meta-data).
    #[serde(default)]
    pub check_interval_s: Option<u64>,
}

/// The kinds of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// Start, stop and check commands under the Cmdline contract.
    Cmdline,
    /// An OCF resource agent.
    Ocf,
    /// A virtual IP address with a gratuitous ARP.
    Vip,
}

/// Cmdline resource flags, spelled as PRIMECLUSTER spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum CmdlineFlag {
    /// Check exit codes 0 to 6 each name a state.
    #[serde(rename = "ALLEXITCODES")]
    AllExitCodes,
    /// No check command: the resource is not monitored.
    #[serde(rename = "NULLDETECTOR")]
    NullDetector,
    /// The resource can be Standby.
    #[serde(rename = "STANDBYCAPABLE")]
    StandbyCapable,
    /// Restart it on a fault before switching.
    #[serde(rename = "AUTORECOVER")]
    AutoRecover,
}

/// A validated `guest.toml` together with the guest cluster key it names.
pub type LoadedGuestConfig = Loaded<GuestConfig>;

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_GUEST_STATE_DIR)
}
fn default_admin_socket() -> PathBuf {
    PathBuf::from(DEFAULT_GUEST_ADMIN_SOCKET)
}
fn default_true() -> bool {
    true
}
fn default_switch_over() -> Vec<SwitchTrigger> {
    vec![SwitchTrigger::HostFailure, SwitchTrigger::ResourceFailure]
}
fn default_restart_limit() -> u32 {
    DEFAULT_RESTART_LIMIT
}
fn default_restart_window() -> u64 {
    DEFAULT_RESTART_WINDOW_S
}

impl Default for GuestAdminSection {
    fn default() -> Self {
        Self {
            socket: default_admin_socket(),
            port: None,
        }
    }
}

impl load::ConfigFile for GuestConfig {
    fn resolve_paths(&mut self, base: &Path) {
        load::resolve(base, &mut self.cluster.key_file);
    }

    fn validate(&self, problems: &mut Problems<'_>) -> Option<Vec<u8>> {
        validate::validate(self, problems)
    }

    fn digest(&self) -> [u8; 16] {
        GuestConfig::digest(self)
    }
}

impl GuestConfig {
    /// Reads, parses and validates `path`, reading the key file it names.
    pub fn load(path: &Path) -> Result<LoadedGuestConfig, ConfigErrors> {
        load::load(path)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn load_str(path: &Path, text: &str) -> Result<LoadedGuestConfig, ConfigErrors> {
        load::load_str(path, text)
    }

    /// Digest of everything the nodes must agree on (nodes, timings, applications).
    pub fn digest(&self) -> [u8; 16] {
        #[derive(Serialize)]
        struct Shared<'a> {
            name: &'a str,
            heartbeat: &'a HeartbeatSection,
            interconnects: &'a [Interconnect],
            nodes: &'a [GuestNode],
            applications: &'a [ApplicationConfig],
        }
        let shared = Shared {
            name: &self.cluster.name,
            heartbeat: &self.heartbeat,
            interconnects: &self.interconnects,
            nodes: &self.nodes,
            applications: &self.applications,
        };
        load::digest_of(&shared)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&GuestNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node with id `id`.
    pub fn node_by_id(&self, id: NodeId) -> Option<&GuestNode> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// Identifier of the guest cluster carried in every frame.
    pub fn cluster_id(&self) -> u64 {
        super::cluster_id_of(&self.cluster.name)
    }
}

#[cfg(test)]
mod tests;
