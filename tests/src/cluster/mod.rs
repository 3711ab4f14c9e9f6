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

mod config;

use config::render_config;
pub use config::{heartbeat_port, ClusterSpec, FenceSpec, KDUMP_PORT};

use crate::collector::EventCollector;
use crate::lab::{Lab, LabSpec};

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
