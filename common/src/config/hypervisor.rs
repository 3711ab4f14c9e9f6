//! `[hypervisor]`, `[vm_ha]` and `[migration]` of cluster.toml: how a host agent controls
//! its guests through libvirt, which domains restart elsewhere when their host is fenced,
//! and how domains move between hosts.

use serde::{Deserialize, Serialize};

/// `[hypervisor]` of cluster.toml: how the host agent controls the guests it runs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HypervisorSection {
    /// libvirt connection URI of this host's hypervisor (e.g. `qemu:///system`); guests
    /// are destroyed through it when no `destroy_command` is given.
    #[serde(default)]
    pub uri: Option<String>,
    /// Command that destroys (powers off at once) a guest of this host, run through
    /// `/bin/sh -c` with `{domain}`, `{node}`, `{cluster}` and `{host}` replaced; exit 0
    /// means the guest is off. None: guests cannot be killed through the hosts.
    #[serde(default)]
    pub destroy_command: Option<String>,
    /// Bound on the destroy command, ms.
    #[serde(default = "default_destroy_timeout_ms")]
    pub destroy_timeout_ms: u64,
    /// What this host does when a domain starts running here while another host not
    /// proved down already runs it (started behind the cluster's back).
    #[serde(default)]
    pub double_run: DoubleRunPolicy,
    /// When set, a guest killed through libvirt first gets an NMI (to panic into its
    /// crash kernel and write a dump) and is destroyed this many ms later. None: destroyed
    /// at once.
    #[serde(default)]
    pub kill_nmi_ms: Option<u64>,
}

impl Default for HypervisorSection {
    fn default() -> Self {
        HypervisorSection {
            uri: None,
            destroy_command: None,
            destroy_timeout_ms: default_destroy_timeout_ms(),
            double_run: DoubleRunPolicy::default(),
            kill_nmi_ms: None,
        }
    }
}

/// `[vm_ha]` of cluster.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmHaSection {
    /// Most virtual CPUs per physical CPU a host may run after a restart.
    #[serde(default = "default_vcpu_ratio")]
    pub vcpu_ratio: f64,
    /// Time a host that failed to start a domain is left out for it before it is tried
    /// again, ms.
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    /// The highly available domains.
    #[serde(rename = "domain", default)]
    pub domains: Vec<HaDomainEntry>,
}

impl Default for VmHaSection {
    fn default() -> Self {
        VmHaSection {
            vcpu_ratio: default_vcpu_ratio(),
            retry_ms: default_retry_ms(),
            domains: Vec::new(),
        }
    }
}

fn default_vcpu_ratio() -> f64 {
    4.0
}

fn default_retry_ms() -> u64 {
    30_000
}

/// `[[vm_ha.domain]]`: one highly available domain, defined on every host that may run
/// it (shared storage).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HaDomainEntry {
    /// Domain name (as libvirt knows it).
    pub name: String,
    /// Restart order after a host failure: lower first.
    #[serde(default = "default_ha_priority")]
    pub priority: u32,
}

fn default_ha_priority() -> u32 {
    100
}

/// `[hypervisor] double_run`: what to do with a domain that runs on two hosts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DoubleRunPolicy {
    /// Keep the instance that ran first (the one the cluster started: every start
    /// through the cluster is refused while the domain runs elsewhere) and destroy the
    /// one that appeared later, on the host where it appeared.
    #[default]
    DestroyNewer,
    /// Only raise the alarm; an operator decides which instance to destroy.
    Alarm,
}

fn default_destroy_timeout_ms() -> u64 {
    30_000
}

/// `[migration]` of cluster.toml: how a domain moves to another host.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MigrationSection {
    /// libvirt URI of a destination host, with `{host}` (its name) and `{address}` (its
    /// address on `network`, else on the first interconnect) replaced.
    #[serde(default = "default_dest_uri")]
    pub dest_uri: String,
    /// The interconnect whose addresses carry QEMU's memory stream (`tcp://ADDRESS`);
    /// None: libvirt chooses (the destination's host name).
    #[serde(default)]
    pub network: Option<String>,
    /// Longest pause of a live migration's last round, ms.
    #[serde(default = "default_max_downtime_ms")]
    pub max_downtime_ms: u64,
    /// A migration that has not ended by then is aborted (the domain stays), s.
    #[serde(default = "default_migration_timeout_s")]
    pub timeout_s: u64,
    /// How `hvctl host maintenance HOST on` moves the domains of HOST unless their
    /// `[[migration.domain]]` says otherwise: live or offline.
    #[serde(default = "default_evacuate_mode")]
    pub evacuate_mode: crate::migration::MigrationMode,
    /// Per-domain settings of host maintenance.
    #[serde(rename = "domain", default)]
    pub domains: Vec<MigrationDomainEntry>,
}

/// `[[migration.domain]]`: how host maintenance treats one domain.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MigrationDomainEntry {
    /// Domain name.
    pub name: String,
    /// How it is evacuated (default `[migration] evacuate_mode`).
    #[serde(default)]
    pub mode: Option<crate::migration::MigrationMode>,
    /// Moved back to its host when the host's maintenance ends.
    #[serde(default)]
    pub failback: bool,
}

fn default_evacuate_mode() -> crate::migration::MigrationMode {
    crate::migration::MigrationMode::Live
}

impl Default for MigrationSection {
    fn default() -> Self {
        MigrationSection {
            dest_uri: default_dest_uri(),
            network: None,
            max_downtime_ms: default_max_downtime_ms(),
            timeout_s: default_migration_timeout_s(),
            evacuate_mode: default_evacuate_mode(),
            domains: Vec::new(),
        }
    }
}

fn default_dest_uri() -> String {
    "qemu+ssh://{address}/system".to_string()
}

fn default_max_downtime_ms() -> u64 {
    300
}

fn default_migration_timeout_s() -> u64 {
    600
}
