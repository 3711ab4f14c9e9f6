//! Simulated BMCs: one OpenIPMI `ipmi_sim` per host, in a namespace of its own on the
//! management network and in a cgroup beside the host's (so cutting the host's power
//! leaves its BMC up), whose chassis-control program kills the host's cgroup on "power
//! off" and records the power state in a file.
//!
//! Processes are placed by joining only the network namespace (as `nsenter --net` does),
//! never with `ip netns exec`, which remounts /sys and would hide the host cgroups from
//! the chassis program.

use super::bmc_files::{self, BmcSetup};
use super::{cgroup, names, netns, rmcp, spawn, Lab};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// User name of every simulated BMC's administrator.
pub const BMC_USER: &str = "admin";
/// How long a starting `ipmi_sim` may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait for one presence pong; a local BMC answers in well under a millisecond.
const PING_WAIT: Duration = Duration::from_millis(100);
/// Bound on the start-up IPMI session check.
const IPMITOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The BMC side of a lab: whether it was set up, and the running `ipmi_sim` children.
#[derive(Debug, Default)]
pub(super) struct Bmcs {
    started: bool,
    children: Mutex<HashMap<usize, Child>>,
}

impl Lab {
    /// Builds the management network (198.19.254.0/24: hosts at `.N`, BMCs at `.100+N`)
    /// and starts one simulated BMC per host, each answering IPMI over LAN with the host
    /// powered on. Call once, after [`Lab::create`]; labs without BMCs pay nothing.
    pub fn start_bmcs(&mut self) -> Result<()> {
        if self.bmcs.started {
            bail!("lab {} already has BMCs", self.id);
        }
        // Set before anything exists, so that destroy reaps whatever the steps below start.
        self.bmcs.started = true;
        self.build_mgmt()
            .with_context(|| format!("lab {}: building the management network", self.id))?;
        for i in 1..=self.spec.hosts {
            let setup = self.bmc_setup(i);
            write_files(&setup)
                .with_context(|| format!("lab {}: preparing the BMC of {}", self.id, setup.host))?;
            fs::write(setup.file(bmc_files::POWER), "on\n")
                .with_context(|| format!("writing {}", setup.file(bmc_files::POWER).display()))?;
            cgroup::create(&self.bmc_cgroup(i))?;
        }
        // Launch all, then wait for all: the start-ups overlap.
        for i in 1..=self.spec.hosts {
            self.launch_bmc(i)?;
        }
        for i in 1..=self.spec.hosts {
            self.wait_bmc_ready(i)?;
        }
        self.check_mgmt_reachability()
    }

    /// Whether [`Lab::start_bmcs`] has run on this lab.
    pub fn has_bmcs(&self) -> bool {
        self.bmcs.started
    }

    /// The IPMI administrator's user name and password on `host`'s BMC; panics if the
    /// host is not part of the lab.
    pub fn bmc_credentials(&self, host: &str) -> (String, String) {
        let i = self.index(host).unwrap_or_else(|e| panic!("{e}"));
        (BMC_USER.to_string(), self.bmc_password(i))
    }

    /// Whether `host` is powered on as its BMC sees it (the chassis program's state file).
    pub fn bmc_power_state(&self, host: &str) -> Result<bool> {
        let i = self.bmc_index(host)?;
        let file = self.bmc_setup(i).file(bmc_files::POWER);
        let text = fs::read_to_string(&file).with_context(|| {
            format!("reading the power state of {host} from {}", file.display())
        })?;
        match text.trim() {
            "on" => Ok(true),
            "off" => Ok(false),
            other => bail!("power state of {host} in {} is {other:?}", file.display()),
        }
    }

    /// How many times `host`'s BMC powered it on or reset it since the BMCs started; a
    /// harness that sees this grow restarts the host's processes (a quick off-on reboot
    /// is otherwise easy to miss between two looks at [`Lab::bmc_power_state`]).
    pub fn bmc_boot_count(&self, host: &str) -> Result<u64> {
        let i = self.bmc_index(host)?;
        let file = self.bmc_setup(i).file(bmc_files::BOOTS);
        match fs::read_to_string(&file) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("boot count of {host} in {}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }

    /// The directory of `host`'s BMC: configuration, state, `events.log`, `ipmi_sim.log`.
    pub fn bmc_dir(&self, host: &str) -> Result<PathBuf> {
        Ok(self.bmc_setup(self.bmc_index(host)?).dir)
    }

    /// Whether `host`'s `ipmi_sim` is running.
    pub fn bmc_running(&self, host: &str) -> bool {
        let Ok(i) = self.bmc_index(host) else {
            return false;
        };
        let mut children = self.bmc_children();
        match children.get_mut(&i).map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                // Exited (or unknowable): forget it so bmc_start can launch a new one.
                if let Some(mut c) = children.remove(&i) {
                    let _ = c.wait();
                }
                false
            }
            None => false,
        }
    }

    /// Kills `host`'s BMC (for "BMC not answering" paths); its address stays configured,
    /// so clients see no answer on port 623, and the host's power state is untouched.
    pub fn bmc_stop(&self, host: &str) -> Result<()> {
        let i = self.bmc_index(host)?;
        let dir = self.bmc_cgroup(i);
        // Through the cgroup, so a chassis program running right now dies with it.
        cgroup::kill(&dir).with_context(|| format!("stopping the BMC of {host}"))?;
        if let Some(mut c) = self.bmc_children().remove(&i) {
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts `host`'s BMC again after [`Lab::bmc_stop`] (no-op if it runs) and waits
    /// until it answers; the host's power state is kept from before.
    pub fn bmc_start(&self, host: &str) -> Result<()> {
        let i = self.bmc_index(host)?;
        if self.bmc_running(host) {
            return Ok(());
        }
        self.launch_bmc(i)?;
        self.wait_bmc_ready(i)
    }

    /// Kills every BMC and reaps its process; used by `destroy` before the lab goes away.
    pub(super) fn stop_all_bmcs(&self) {
        if !self.bmcs.started {
            return;
        }
        for i in 1..=self.spec.hosts {
            let dir = self.bmc_cgroup(i);
            if dir.exists() {
                if let Err(e) = cgroup::kill(&dir) {
                    tracing::warn!("stopping the BMC of h{i}: {e:#}");
                }
            }
        }
        for (_, mut c) in self.bmc_children().drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Index of a host of this lab whose BMC exists, or an error saying what is missing.
    fn bmc_index(&self, host: &str) -> Result<usize> {
        let i = self.index(host)?;
        if !self.bmcs.started {
            bail!(
                "lab {} has no BMCs (call Lab::start_bmcs first); asked for {host}'s",
                self.id
            );
        }
        Ok(i)
    }

    fn bmc_children(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Child>> {
        self.bmcs.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bmc_password(&self, i: usize) -> String {
        // Distinct per lab and host, so a fence device pointed at the wrong BMC fails.
        format!("lab-{}-h{i}", self.id)
    }

    fn bmc_cgroup(&self, i: usize) -> PathBuf {
        self.cgroup.join(names::bmc_cgroup(i))
    }

    fn bmc_setup(&self, i: usize) -> BmcSetup {
        let host = names::host_name(i);
        BmcSetup {
            name: names::netns_bmc(&self.id, i),
            addr: names::bmc_addr(i),
            user: BMC_USER.to_string(),
            password: self.bmc_password(i),
            // "hvlb" in hex, the lab id, the host index: unique and recognisable.
            guid: format!("68766c62{}{:020x}", self.id, i),
            dir: self.run_dir.join("bmc").join(&host),
            host_cgroup: self.cgroup.join(&host),
            host,
        }
    }

    /// Starts `ipmi_sim` for host `i` in the BMC's namespace and cgroup.
    fn launch_bmc(&self, i: usize) -> Result<()> {
        let b = self.bmc_setup(i);
        let ns = netns::path(&names::netns_bmc(&self.id, i));
        let log_path = b.file(bmc_files::SIM_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .with_context(|| format!("duplicating {}", log_path.display()))?;
        let mut cmd = Command::new(netns::program("ipmi_sim"));
        cmd.arg("-c")
            .arg(b.file(bmc_files::LAN_CONF))
            .arg("-f")
            .arg(b.file(bmc_files::EMU_CMDS))
            .arg("-s")
            .arg(b.file(bmc_files::STATE_DIR))
            // No console: with one, ipmi_sim polls stdin, which fails on /dev/null.
            .arg("-n")
            .current_dir(&b.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let what = spawn::describe(&cmd);
        let child = spawn::spawn_placed(
            cmd,
            &spawn::open_netns(&ns)?,
            Some(&spawn::open_procs(&self.bmc_cgroup(i))?),
        )
        .with_context(|| {
            format!(
                "starting the BMC of {}: `{what}` in {}",
                b.host,
                ns.display()
            )
        })?;
        if let Some(mut old) = self.bmc_children().insert(i, child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        Ok(())
    }

    /// Waits until host `i`'s `ipmi_sim` answers a presence ping, then checks one real
    /// IPMI session (RMCP+, cipher suite 3) and the chassis program behind it.
    fn wait_bmc_ready(&self, i: usize) -> Result<()> {
        let b = self.bmc_setup(i);
        let ns = netns::path(&names::netns_bmc(&self.id, i));
        let to = SocketAddr::new(b.addr.into(), rmcp::PORT);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut tag = 0u8;
        loop {
            if let Some(status) = self.bmc_exit_status(i) {
                bail!(
                    "the BMC of {} (ipmi_sim in {}) exited at start-up ({status}); {}:\n{}",
                    b.host,
                    ns.display(),
                    b.file(bmc_files::SIM_LOG).display(),
                    read_tail(&b.file(bmc_files::SIM_LOG))
                );
            }
            tag = tag.wrapping_add(1);
            // From the BMC's own namespace: readiness must not depend on any host's state.
            if spawn::in_netns(&ns, || rmcp::presence_ping(to, tag, PING_WAIT))?
                .with_context(|| format!("pinging the BMC of {} at {to}", b.host))?
            {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the BMC of {} ({to}, namespace {}) did not answer within {READY_TIMEOUT:?}; {}:\n{}",
                    b.host,
                    ns.display(),
                    b.file(bmc_files::SIM_LOG).display(),
                    read_tail(&b.file(bmc_files::SIM_LOG))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut cmd = Command::new(netns::program("ipmitool"));
        cmd.args(["-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H"])
            .arg(b.addr.to_string())
            .args(["-U", &b.user, "-E", "chassis", "power", "status"])
            .env("IPMI_PASSWORD", &b.password);
        let out = spawn::run_tool_ok(&ns, cmd, None, IPMITOOL_TIMEOUT).with_context(|| {
            format!(
                "checking an IPMI session with the BMC of {} (see {} and {})",
                b.host,
                b.file(bmc_files::SIM_LOG).display(),
                b.file(bmc_files::EVENTS).display()
            )
        })?;
        if !out.stdout.contains("Chassis Power is") {
            bail!(
                "the BMC of {} answered `chassis power status` with {:?}",
                b.host,
                out.stdout.trim()
            );
        }
        Ok(())
    }

    /// The exit status of host `i`'s `ipmi_sim` if it is no longer running.
    fn bmc_exit_status(&self, i: usize) -> Option<std::process::ExitStatus> {
        let mut children = self.bmc_children();
        let c = children.get_mut(&i)?;
        c.try_wait().ok().flatten()
    }

    /// Checks that every host reaches every BMC over the management network.
    fn check_mgmt_reachability(&self) -> Result<()> {
        for h in 1..=self.spec.hosts {
            let host_ns = netns::path(&names::netns_host(&self.id, h));
            let unreachable: Vec<String> = spawn::in_netns(&host_ns, || {
                (1..=self.spec.hosts)
                    .filter(|&i| {
                        let to = SocketAddr::new(names::bmc_addr(i).into(), rmcp::PORT);
                        // The first ping may wait on ARP; a few tries cover it.
                        !(0..5u8)
                            .any(|t| rmcp::presence_ping(to, t, PING_WAIT * 2).unwrap_or(false))
                    })
                    .map(|i| format!("{} ({})", names::host_name(i), names::bmc_addr(i)))
                    .collect()
            })?;
            if !unreachable.is_empty() {
                bail!(
                    "lab {}: {} (namespace {}) cannot reach the BMCs of {}",
                    self.id,
                    names::host_name(h),
                    host_ns.display(),
                    unreachable.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Writes the BMC's configuration and chassis program into its directory.
fn write_files(b: &BmcSetup) -> Result<()> {
    fs::create_dir_all(b.file(bmc_files::STATE_DIR))
        .with_context(|| format!("creating {}", b.file(bmc_files::STATE_DIR).display()))?;
    let files = [
        (bmc_files::LAN_CONF, bmc_files::lan_conf(b)?, 0o600),
        (bmc_files::EMU_CMDS, bmc_files::emu_cmds(b), 0o644),
        (bmc_files::CHASSIS, bmc_files::chassis_script(b)?, 0o755),
    ];
    for (name, text, mode) in files {
        let path = b.file(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// The last lines of a log file, for error messages.
fn read_tail(path: &std::path::Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
