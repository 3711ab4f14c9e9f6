//! A host cluster running in a lab: the configuration every host shares, one `hv-hostd`
//! per simulated host, and admin-socket access to each of them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hvcluster_common::admin::{HostStatus, Request, Response};
use hvctl::client::Connection;
use serde::Deserialize;

use crate::collector::EventCollector;
use crate::lab::{Lab, LabSpec};

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

/// A running lab cluster. Dropping it stops every agent and removes the lab.
#[derive(Debug)]
pub struct LabCluster {
    /// The lab (namespaces, cgroups, faults).
    pub lab: Lab,
    /// The cluster's specification.
    pub spec: ClusterSpec,
    /// Where the configuration, key, sockets, state and logs live.
    pub dir: PathBuf,
    /// Path of the shared cluster.toml.
    pub config_path: PathBuf,
    /// The cluster key.
    pub key: Vec<u8>,
    agents: BTreeMap<String, Child>,
    /// Each host's libvirtd and the lab's connection to it (see `hypervisors`).
    pub(crate) hypervisors: BTreeMap<String, (Child, hvcluster_host_agent::hypervisor::Libvirt)>,
    /// Hosts whose hypervisor has started once (later starts are reboots).
    pub(crate) booted: std::collections::BTreeSet<String>,
    bin_dir: PathBuf,
    /// Events of every agent, gathered as they happen.
    pub events: EventCollector,
}

/// Directory holding the workspace's binaries (`hv-hostd`, `hvctl`, `hvlab`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("HVLAB_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe
        .parent()
        .context("executable without a directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if !dir.join("hv-hostd").exists() {
        bail!(
            "hv-hostd is not in {} — build the workspace first (cargo build --workspace --bins), \
             or point HVLAB_BIN_DIR at the binaries",
            dir.display()
        );
    }
    Ok(dir)
}

impl LabCluster {
    /// Creates the lab, writes the configuration and starts an agent on every host.
    pub fn start(spec: &ClusterSpec) -> anyhow::Result<LabCluster> {
        let bin_dir = bin_dir()?;
        let mut lab = Lab::create(&LabSpec {
            hosts: spec.hosts,
            interconnects: spec.interconnects,
        })
        .context("cannot create the lab")?;
        if spec.fence.is_some() {
            lab.start_bmcs()
                .context("cannot start the simulated BMCs")?;
        }
        LabCluster::add_guests(&lab, spec)?;
        let dir = lab.run_dir().to_path_buf();
        let key: Vec<u8> = (0..32)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(37)
                    .wrapping_add(lab.id().len() as u8)
            })
            .collect();
        crate::keys::write_key(&dir.join(crate::keys::CLUSTER_KEY_FILE), &key)?;
        if !spec.guests.is_empty() {
            let guest_key: Vec<u8> = key.iter().map(|b| b ^ 0x5a).collect();
            crate::keys::write_key(&dir.join(crate::guests::GUEST_KEY_FILE), &guest_key)?;
            let stranger_key: Vec<u8> = key.iter().map(|b| b ^ 0xa5).collect();
            crate::keys::write_key(&dir.join(crate::guests::STRANGER_KEY_FILE), &stranger_key)?;
        }
        let config_path = dir.join("cluster.toml");
        std::fs::write(&config_path, render_config(&lab, spec)?)?;
        let events = EventCollector::new();
        let mut cluster = LabCluster {
            lab,
            spec: spec.clone(),
            dir,
            config_path,
            key,
            agents: BTreeMap::new(),
            hypervisors: BTreeMap::new(),
            booted: Default::default(),
            bin_dir,
            events,
        };
        for host in cluster.lab.host_names() {
            cluster.start_agent(&host)?;
        }
        cluster.start_guests()?;
        Ok(cluster)
    }

    /// Host names, h1..hN.
    pub fn hosts(&self) -> Vec<String> {
        self.lab.host_names()
    }

    /// Whether `name` is one of the cluster's guests (rather than a host).
    pub fn is_guest(&self, name: &str) -> bool {
        self.spec.guests.iter().any(|g| g.name == name)
    }

    /// Admin socket of the agent of `name`, a host or a guest.
    pub fn socket(&self, name: &str) -> PathBuf {
        if self.is_vm(name) {
            if let Ok(path) = self.vm_admin_socket(name) {
                return path;
            }
        }
        let file = if self.is_guest(name) {
            "guestd.sock"
        } else {
            "hostd.sock"
        };
        self.dir.join(name).join(file)
    }

    /// Log file of the agent of `name`, a host or a guest.
    pub fn log(&self, name: &str) -> PathBuf {
        let file = if self.is_guest(name) {
            "guestd.log"
        } else {
            "hostd.log"
        };
        self.dir.join(name).join(file)
    }

    /// Address of `host` on interconnect `ic`.
    pub fn address(&self, host: &str, ic: usize) -> IpAddr {
        self.lab.address(host, ic)
    }

    /// Starts `host`'s agent (after a power loss, or a stop) and follows its events.
    pub fn start_agent(&mut self, host: &str) -> anyhow::Result<()> {
        let child = self.spawn_host_agent(host)?;
        self.adopt_agent(host, child)
    }

    /// Starts hv-hostd on `host` (output to its log) and leaves the child to the caller.
    pub(crate) fn spawn_host_agent(&mut self, host: &str) -> anyhow::Result<Child> {
        self.ensure_hypervisor(host)?;
        let hdir = self.dir.join(host);
        std::fs::create_dir_all(hdir.join("state"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(host))?;
        let mut cmd = Command::new(self.bin_dir.join("hv-hostd"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--host")
            .arg(host)
            .arg("--admin-socket")
            .arg(self.socket(host))
            .arg("--state-dir")
            .arg(hdir.join("state"))
            .arg("--psi-source")
            .arg(self.psi_source(host)?)
            .env("HV_LOG", "info")
            // Host-side application scripts call the suite's own tools (hv-guest).
            .env("PATH", with_bin_dir(&self.bin_dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        unblock_signals(&mut cmd);
        self.lab
            .spawn(host, cmd)
            .with_context(|| format!("cannot start hv-hostd on {host}"))
    }

    /// Takes charge of a just started agent of `name` (host or guest): waits for its
    /// admin socket and follows its events.
    pub(crate) fn adopt_agent(&mut self, name: &str, child: Child) -> anyhow::Result<()> {
        if let Some(mut old) = self.agents.insert(name.to_string(), child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.wait_for_socket(name, Duration::from_secs(10))?;
        self.events.follow(name, self.socket(name));
        Ok(())
    }

    /// The pressure file `host`'s load watchdog reads.
    fn psi_source(&self, host: &str) -> anyhow::Result<PathBuf> {
        if !self.spec.simulated_pressure {
            return Ok(self.lab.psi_path(host));
        }
        let path = self.dir.join(host).join("pressure");
        if !path.exists() {
            self.set_pressure(host, 0.0)?;
        }
        Ok(path)
    }

    /// Sets the simulated CPU pressure (`some avg10`, percent) of `host`.
    pub fn set_pressure(&self, host: &str, percent: f64) -> anyhow::Result<()> {
        if !self.spec.simulated_pressure {
            bail!("the cluster has no simulated pressure: set simulated_pressure = true");
        }
        let path = self.dir.join(host).join("pressure");
        let text = format!(
            "some avg10={percent:.2} avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        );
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Stops `host`'s agent with SIGTERM and waits for it.
    pub fn stop_agent(&mut self, host: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.agents.remove(host) {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Kills `host`'s agent with SIGKILL, as a crash would, and reaps it.
    pub fn kill_agent(&mut self, host: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.agents.remove(host) {
            child
                .kill()
                .with_context(|| format!("cannot kill hv-hostd on {host}"))?;
            child.wait()?;
        }
        Ok(())
    }

    /// Forgets the agent of `name` after its processes were killed, and reaps it.
    pub(crate) fn forget_agent(&mut self, name: &str) {
        if let Some(mut c) = self.agents.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Process id of the running agent of `name`.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.agents.get(name).map(Child::id)
    }

    /// Whether `host`'s agent process is still running.
    pub fn agent_running(&mut self, host: &str) -> bool {
        self.agents
            .get_mut(host)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Forgets `host`'s agent after its cgroup was killed (power loss), and the agents
    /// of the guests that ran on it.
    pub fn reap_agent(&mut self, host: &str) {
        let guests: Vec<String> = self
            .spec
            .guests
            .iter()
            .filter(|g| g.host == host)
            .map(|g| g.name.clone())
            .collect();
        for name in std::iter::once(host.to_string()).chain(guests) {
            self.forget_agent(&name);
        }
    }

    fn wait_for_socket(&mut self, host: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if Connection::open(&self.socket(host)).is_ok() {
                return Ok(());
            }
            if !self.agent_running(host) {
                bail!(
                    "the agent of {host} exited at start; its log {}:\n{}",
                    self.log(host).display(),
                    tail(&self.log(host))
                );
            }
            if Instant::now() > deadline {
                bail!("the agent of {host} did not open its admin socket within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host`'s current status.
    pub fn status(&self, host: &str) -> anyhow::Result<HostStatus> {
        let mut conn = Connection::open(&self.socket(host))?;
        match conn.request(&Request::Status)? {
            Response::Status(s) => Ok(*s),
            other => bail!("unexpected answer from {host}: {other:?}"),
        }
    }

    /// Waits until every host sees every other host Up and is quorate.
    pub fn wait_all_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ok = true;
            for h in self.hosts() {
                match self.status(&h) {
                    Ok(s) => {
                        ok &= s.quorum.quorate
                            && s.hosts
                                .iter()
                                .all(|l| l.state == hvcluster_common::membership::HostState::Up);
                    }
                    Err(_) => ok = false,
                }
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster did not form within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        self.events.stop();
        let hypervisors = std::mem::take(&mut self.hypervisors)
            .into_iter()
            .map(|(h, (c, _))| (h, c));
        for (_, mut c) in std::mem::take(&mut self.agents)
            .into_iter()
            .chain(hypervisors)
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// hvlab blocks SIGINT/SIGTERM for its own handler; an agent must not inherit that.
pub(crate) fn unblock_signals(cmd: &mut Command) {
    // SAFETY: sigprocmask is async-signal-safe; nothing is allocated.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mut set = nix::sys::signal::SigSet::empty();
            set.add(nix::sys::signal::Signal::SIGINT);
            set.add(nix::sys::signal::Signal::SIGTERM);
            set.thread_unblock().map_err(std::io::Error::from)
        });
    }
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// PATH with `bin_dir` first.
fn with_bin_dir(bin_dir: &Path) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let dirs = std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(&rest));
    std::env::join_paths(dirs).unwrap_or(rest)
}

fn render_config(lab: &Lab, spec: &ClusterSpec) -> anyhow::Result<String> {
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
