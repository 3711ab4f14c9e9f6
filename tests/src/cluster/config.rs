//! The configuration every host of a lab cluster shares: the scenario's cluster spec, the
//! lab's ports, and the cluster.toml written from them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::lab::Lab;

/// Heartbeat port of interconnect `k` in the lab.
pub fn heartbeat_port(k: usize) -> u16 {
    5405 + k as u16
}

/// Port of the kdump panic notices in the lab.
pub const KDUMP_PORT: u16 = 7410;

/// The cluster a scenario runs: size and timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Number of hosts (h1..hN).
    #[serde(default = "default_hosts")]
    pub hosts: usize,
    /// Number of interconnects.
    #[serde(default = "default_interconnects")]
    pub interconnects: usize,
    /// Heartbeat interval.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Silence before Suspect.
    #[serde(default = "default_suspect")]
    pub suspect_after_ms: u64,
    /// Silence before Failed.
    #[serde(default = "default_dead")]
    pub dead_after_ms: u64,
    /// Survival weights by host name (default 1).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Fencing: simulated BMCs and fence levels for every host.
    #[serde(default)]
    pub fence: Option<FenceSpec>,
    /// Guests (g1..) of one guest cluster, each on a host.
    #[serde(default, rename = "guest")]
    pub guests: Vec<crate::guests::GuestSpec>,
    /// The guest cluster's applications, as `[[application]]` tables of guest.toml.
    #[serde(default, rename = "application")]
    pub applications: Vec<toml::Table>,
    /// Guests link to their host's agent (the host link, TCP on the guest LAN); false
    /// leaves the guest cluster on its own, as without hvcluster on the hosts.
    #[serde(default = "default_host_link")]
    pub host_link: bool,
    /// Each host's load watchdog reads a pressure file the scenario sets (step
    /// `pressure`) instead of its cgroup's real CPU pressure.
    #[serde(default)]
    pub simulated_pressure: bool,
    /// Domains running on each host's hypervisor (libvirt's test driver), by host.
    /// Non-empty: every host gets `[hypervisor] uri` to its own test-driver host.
    #[serde(default)]
    pub domains: BTreeMap<String, Vec<String>>,
    /// Domains defined but shut off on each host's hypervisor, by host.
    #[serde(default)]
    pub defined: BTreeMap<String, Vec<String>>,
    /// Memory of domains, in MiB, by domain (512 when not given). A lab host has 3 GiB
    /// and 16 CPUs (libvirt's test driver).
    #[serde(default)]
    pub domain_memory_mib: BTreeMap<String, u64>,
    /// The cluster's `[vm_ha]` section, as written in cluster.toml.
    #[serde(default)]
    pub vm_ha: Option<toml::Table>,
    /// Host-side applications, as `[[application]]` tables of cluster.toml (their
    /// nodes are hosts).
    #[serde(default, rename = "host_application")]
    pub host_applications: Vec<toml::Table>,
    /// `[[migration.domain]]` tables of the generated cluster.toml (real tier).
    #[serde(default, rename = "migration_domain")]
    pub migration_domains: Vec<toml::Table>,
}

fn default_host_link() -> bool {
    true
}

/// Fencing of a lab cluster: every host gets the same levels, made of device templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceSpec {
    /// Levels in order, each a list of templates: `ipmi` (fence_ipmilan against the
    /// host's simulated BMC), `fail` (fence_dummy that always fails), `kdump` (a panic
    /// notice is proof), `manual` (an operator confirms).
    pub levels: Vec<Vec<String>>,
    /// Two-node race delay of the weaker side.
    #[serde(default)]
    pub race_delay_ms: Option<u64>,
}

fn default_hosts() -> usize {
    3
}
fn default_interconnects() -> usize {
    1
}
fn default_interval() -> u64 {
    200
}
fn default_suspect() -> u64 {
    500
}
fn default_dead() -> u64 {
    1000
}

impl ClusterSpec {
    /// Whether the hosts get a (test-driver) hypervisor.
    pub fn has_hypervisors(&self) -> bool {
        !self.domains.is_empty() || !self.defined.is_empty() || self.has_vms()
    }

    /// Whether some guests are VMs (the real tier): the hosts then run a full libvirtd.
    pub fn has_vms(&self) -> bool {
        self.guests.iter().any(|g| g.vm)
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

pub(super) fn render_config(lab: &Lab, spec: &ClusterSpec) -> anyhow::Result<String> {
    let mut out = format!(
        "# Written by hvlab for lab {id}.\n[cluster]\nname = \"lab-{id}\"\nkey_file = \"cluster.key\"\n\n\
         [heartbeat]\ninterval_ms = {}\nsuspect_after_ms = {}\ndead_after_ms = {}\n\n\
         [kdump]\nport = {KDUMP_PORT}\n\n[load_watchdog]\nhung_limit_ms = {}\n\n",
        spec.interval_ms,
        spec.suspect_after_ms,
        spec.dead_after_ms,
        spec.dead_after_ms,
        id = lab.id()
    );
    for k in 0..spec.interconnects {
        out.push_str(&format!(
            "[[interconnect]]\nname = \"ic{k}\"\nport = {}\n\n",
            heartbeat_port(k)
        ));
    }
    if let Some(fence) = &spec.fence {
        out.push_str(&render_fencing(lab, fence)?);
    }
    let linked = spec.host_link && !spec.guests.is_empty();
    if linked || spec.has_hypervisors() {
        out.push_str("[hypervisor]\ndestroy_timeout_ms = 10000\n");
        if spec.has_hypervisors() {
            // Each host's own libvirtd (see `hypervisors`).
            let uri = crate::hypervisors::uri_template(lab.run_dir(), spec.has_vms());
            out.push_str(&format!("uri = {}\n", toml::Value::String(uri)));
        }
        if linked && !spec.has_vms() {
            out.push_str(&format!(
                "destroy_command = {}\n",
                toml::Value::String(lab.guest_destroy_command())
            ));
        }
        out.push('\n');
    }
    if linked && spec.has_vms() {
        // VM guests link through virtio-serial channels, whose sockets are here.
        let dir = format!("{}/{{host}}/channels", lab.run_dir().display());
        out.push_str(&format!(
            "[host_link]\nchannel_dir = {}\n\n",
            toml::Value::String(dir)
        ));
        // Migration: the source's agent reaches the destination's libvirtd through its
        // socket; QEMU's stream goes over ic0.
        let uri = crate::hypervisors::uri_template(lab.run_dir(), true);
        out.push_str(&format!(
            "[migration]\ndest_uri = {}\nnetwork = \"ic0\"\ntimeout_s = 120\n\n",
            toml::Value::String(uri)
        ));
        for d in &spec.migration_domains {
            out.push_str("[[migration.domain]]\n");
            out.push_str(&toml::to_string(d)?);
            out.push('\n');
        }
    }
    if let Some(vm_ha) = &spec.vm_ha {
        let mut section = toml::Table::new();
        section.insert("vm_ha".into(), toml::Value::Table(vm_ha.clone()));
        out.push_str(&toml::to_string(&section)?);
        out.push('\n');
    }
    if !spec.host_applications.is_empty() {
        let mut apps = toml::Table::new();
        let list = spec.host_applications.iter().cloned();
        apps.insert(
            "application".into(),
            toml::Value::Array(list.map(toml::Value::Table).collect()),
        );
        out.push_str(&toml::to_string(&apps)?);
        out.push('\n');
    }
    if linked {
        out.push_str(&format!(
            "[[guest_cluster]]\nname = \"{}\"\nkey_file = \"{}\"\n\n",
            crate::guests::guest_cluster_name(lab),
            crate::guests::GUEST_KEY_FILE
        ));
        // Each guest runs in the domain of its name; one linking over TCP comes from
        // its own address on the guest LAN.
        for g in &spec.guests {
            let address = if g.vm {
                String::new()
            } else {
                format!("address = \"{}\"\n", lab.guest_address(&g.name)?)
            };
            out.push_str(&format!(
                "[[guest_cluster.member]]\nnode = \"{0}\"\nnode_id = {1}\ndomain = \"{0}\"\n{address}\n",
                g.name,
                g.name.trim_start_matches('g')
            ));
        }
        // Another guest cluster these hosts serve, with no guest of its own in the lab:
        // the credentials of a stranger to the lab's guest cluster. Its members may
        // link from anywhere on the guest LAN.
        out.push_str(&format!(
            "[[guest_cluster]]\nname = \"{}\"\nkey_file = \"{}\"\n\n\
             [[guest_cluster.member]]\nnode = \"stranger\"\nnode_id = 1\ndomain = \"stranger-1\"\n\n\
             [[guest_cluster.member]]\nnode = \"s2\"\nnode_id = 2\ndomain = \"stranger-2\"\n\n",
            crate::guests::stranger_cluster_name(lab),
            crate::guests::STRANGER_KEY_FILE
        ));
    }
    for (i, host) in lab.host_names().iter().enumerate() {
        let levels = spec.fence.as_ref().map(|f| {
            let lv: Vec<String> = f
                .levels
                .iter()
                .map(|l| {
                    format!(
                        "[{}]",
                        l.iter()
                            .map(|t| format!("\"{t}-{host}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            format!("fence_levels = [{}]\n", lv.join(", "))
        });
        let addrs: Vec<String> = (0..spec.interconnects)
            .map(|k| format!("ic{k} = \"{}\"", lab.address(host, k)))
            .collect();
        let link = if linked {
            format!("link_address = \"{}\"\n", lab.host_guest_lan_address(host)?)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "[[host]]\nname = \"{host}\"\nnode_id = {}\nweight = {}\naddresses = {{ {} }}\n{}{link}\n",
            i + 1,
            spec.weights.get(host).copied().unwrap_or(1),
            addrs.join(", "),
            levels.unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `[fencing]` and one `[[fence_device]]` per host and template.
fn render_fencing(lab: &Lab, fence: &FenceSpec) -> anyhow::Result<String> {
    let mut out = String::from("[fencing]\nretry_backoff_ms = 1000\nmax_backoff_ms = 8000\n");
    if let Some(d) = fence.race_delay_ms {
        out.push_str(&format!("race_delay_ms = {d}\n"));
    }
    out.push('\n');
    let templates: std::collections::BTreeSet<&str> =
        fence.levels.iter().flatten().map(String::as_str).collect();
    for host in lab.host_names() {
        for t in &templates {
            let name = format!("{t}-{host}");
            match *t {
                "ipmi" => {
                    let (user, password) = lab.bmc_credentials(&host);
                    let pass_file = lab.run_dir().join(format!("{name}.pass"));
                    std::fs::write(&pass_file, format!("{password}\n"))?;
                    out.push_str(&format!(
                        "[[fence_device]]\nname = \"{name}\"\nkind = \"agent\"\nagent = \"fence_ipmilan\"\n\
                         password_file = \"{}\"\ntimeout_ms = 10000\nretries = 0\n\
                         params = {{ ip = \"{}\", username = \"{user}\", lanplus = \"1\", cipher = \"3\", \
                         power_wait = \"0\", power_timeout = \"2\" }}\n\n",
                        pass_file.display(),
                        lab.bmc_address(&host)
                    ));
                }
                "fail" => out.push_str(&format!(
                    "[[fence_device]]\nname = \"{name}\"\nkind = \"agent\"\nagent = \"fence_dummy\"\n\
                     timeout_ms = 10000\nretries = 0\nparams = {{ type = \"fail\", power_timeout = \"1\" }}\n\n"
                )),
                "kdump" => out.push_str(&format!(
                    "[[fence_device]]\nname = \"{name}\"\nkind = \"kdump\"\nwait_ms = 5000\n\n"
                )),
                "manual" => out.push_str(&format!("[[fence_device]]\nname = \"{name}\"\nkind = \"manual\"\n\n")),
                other => anyhow::bail!("unknown fence device template {other:?}: use ipmi, fail, kdump or manual"),
            }
        }
    }
    Ok(out)
}
