//! The system layer of the lab: simulated hosts as network namespaces on per-interconnect
//! bridges, with their processes in cgroup v2 groups, plus the faults applied to them.
//!
//! Nothing here touches the machine's own network: the bridges live in a switch namespace
//! of the lab, and lab addresses (198.18.0.0/15) are routable only inside lab namespaces.
//! Optionally ([`Lab::start_bmcs`]) every host also gets a simulated BMC on a management
//! network, driven by the real fence agents.

mod bmc;
mod bmc_files;
mod cgroup;
mod cleanup;
mod faults;
mod fence;
mod guest;
pub mod image;
mod mgmt;
mod names;
mod netns;
mod nft;
mod probe;
mod rmcp;
pub(crate) mod spawn;
mod tools;

pub use bmc::BMC_USER;
pub use cleanup::{cleanup_all, cleanup_owned_by, cleanup_stale};
pub use fence::{
    fence_dummy_params, stdin_text as fence_stdin, FenceRun, FENCE_DUMMY, FENCE_IPMILAN,
    IPMI_POWER_TIMEOUT_SECS,
};
pub use names::{
    GUEST_IF, HOST_GUEST_BRIDGE, MAX_GUESTS, MAX_HOSTS, MAX_INTERCONNECTS, PREFIX_LEN,
};
pub use netns::program;
pub use tools::{ping_command, LoadSpec};

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

/// The shape of a lab: how many hosts and interconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabSpec {
    /// Number of simulated hosts, named `h1`..`hN`.
    pub hosts: usize,
    /// Number of interconnects (bridges); interconnect k uses 198.18.k.0/24.
    pub interconnects: usize,
}

/// A namespace of the lab that code can run in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsTarget {
    /// A simulated host, by name (`h1`..).
    Host(String),
    /// The rogue namespace: an unconfigured or hostile sender on every bridge.
    Rogue,
    /// The switch namespace holding the bridges.
    Switch,
}

impl NsTarget {
    /// Shorthand for `NsTarget::Host(name.to_string())`.
    pub fn host(name: &str) -> NsTarget {
        NsTarget::Host(name.to_string())
    }
}

/// A running lab; dropping it tears everything down.
#[derive(Debug)]
pub struct Lab {
    id: String,
    run_dir: PathBuf,
    cgroup: PathBuf,
    spec: LabSpec,
    faults: Mutex<HashMap<usize, nft::FaultSet>>,
    loads: Mutex<HashMap<usize, Vec<Child>>>,
    bmcs: bmc::Bmcs,
    /// Guests by name, with the host each runs on.
    guests: Mutex<BTreeMap<String, String>>,
    destroyed: bool,
}

impl Lab {
    /// Builds a lab (removing stale labs of dead processes first) and checks that hosts
    /// reach each other on every interconnect.
    pub fn create(spec: &LabSpec) -> Result<Lab> {
        if spec.hosts == 0 || spec.hosts > names::MAX_HOSTS {
            bail!(
                "a lab needs 1..={} hosts, not {}",
                names::MAX_HOSTS,
                spec.hosts
            );
        }
        if spec.interconnects == 0 || spec.interconnects > names::MAX_INTERCONNECTS {
            bail!(
                "a lab needs 1..={} interconnects, not {}",
                names::MAX_INTERCONNECTS,
                spec.interconnects
            );
        }
        if !nix::unistd::geteuid().is_root() {
            bail!("the lab needs root (network namespaces, cgroups, nftables)");
        }
        if let Err(e) = cleanup_stale() {
            tracing::warn!("cleaning up stale labs failed: {e:#}");
        }
        let cg_root = cgroup::root()?;
        let id = cleanup::claim_id()?;
        let mut lab = Lab {
            run_dir: names::run_dir(&id),
            cgroup: cg_root.join(names::cgroup_dir(&id)),
            id,
            spec: *spec,
            faults: Mutex::new(HashMap::new()),
            loads: Mutex::new(HashMap::new()),
            bmcs: bmc::Bmcs::default(),
            guests: Mutex::new(BTreeMap::new()),
            destroyed: false,
        };
        match lab.build() {
            Ok(()) => Ok(lab),
            Err(e) => {
                let id = lab.id.clone();
                lab.destroy();
                Err(e.context(format!("creating lab {id}")))
            }
        }
    }

    fn build(&self) -> Result<()> {
        cgroup::create(&self.cgroup)?;
        for h in self.host_names() {
            cgroup::create(&self.cgroup.join(&h))?;
        }
        cgroup::create(&self.cgroup.join(names::ROGUE))?;

        let switch = names::netns_switch(&self.id);
        let mut members = Vec::new();
        for i in 1..=self.spec.hosts {
            members.push(netns::Member {
                netns: names::netns_host(&self.id, i),
                ports: (0..self.spec.interconnects)
                    .map(|k| names::switch_port(&self.id, i, k))
                    .collect(),
                addrs: (0..self.spec.interconnects)
                    .map(|k| names::host_addr(i, k))
                    .collect(),
            });
        }
        members.push(netns::Member {
            netns: names::netns_rogue(&self.id),
            ports: (0..self.spec.interconnects)
                .map(|k| names::rogue_port(&self.id, k))
                .collect(),
            addrs: (0..self.spec.interconnects)
                .map(names::rogue_addr)
                .collect(),
        });

        for ns in std::iter::once(&switch).chain(members.iter().map(|m| &m.netns)) {
            netns::add(ns)?;
            // Interfaces created later inherit `default`; IPv6 would only add DAD and
            // router-solicitation noise to captures and timing.
            if Path::new("/proc/sys/net/ipv6").exists() {
                netns::sysctl(ns, "ipv6/conf/default/disable_ipv6", "1")?;
            }
        }
        netns::ip_batch(
            &switch,
            &netns::switch_script(&self.id, self.spec.interconnects, &members),
        )?;
        for m in &members {
            netns::ip_batch(&m.netns, &netns::member_script(m))?;
        }
        probe::check_reachability(self)
    }

    /// The lab's short unique id, part of every name it uses.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lab's shape.
    pub fn spec(&self) -> LabSpec {
        self.spec
    }

    /// The lab's run directory, `/run/hvlab/<id>`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Names of the simulated hosts, `h1`..`hN`.
    pub fn host_names(&self) -> Vec<String> {
        (1..=self.spec.hosts).map(names::host_name).collect()
    }

    /// 1-based index of a host of this lab, or an error naming the bad host.
    fn index(&self, host: &str) -> Result<usize> {
        match names::host_index(host) {
            Some(i) if i <= self.spec.hosts => Ok(i),
            _ => bail!(
                "lab {} has no host {host:?} (hosts are h1..h{})",
                self.id,
                self.spec.hosts
            ),
        }
    }

    fn check_ic(&self, ic: usize) -> Result<()> {
        if ic >= self.spec.interconnects {
            bail!(
                "lab {} has no interconnect {ic} (0..{})",
                self.id,
                self.spec.interconnects
            );
        }
        Ok(())
    }

    /// Address of `host` on interconnect `ic`; panics if either is not part of the lab.
    pub fn address(&self, host: &str, ic: usize) -> IpAddr {
        let i = self.index(host).unwrap_or_else(|e| panic!("{e}"));
        self.check_ic(ic).unwrap_or_else(|e| panic!("{e}"));
        IpAddr::V4(names::host_addr(i, ic))
    }

    /// Address of the rogue namespace on interconnect `ic`; panics if there is no such one.
    pub fn rogue_address(&self, ic: usize) -> IpAddr {
        self.check_ic(ic).unwrap_or_else(|e| panic!("{e}"));
        IpAddr::V4(names::rogue_addr(ic))
    }

    /// The cgroup v2 directory of `host`; panics if the host is not part of the lab.
    pub fn cgroup_dir(&self, host: &str) -> PathBuf {
        let i = self.index(host).unwrap_or_else(|e| panic!("{e}"));
        self.cgroup.join(names::host_name(i))
    }

    /// The host's `cpu.pressure`, the PSI source its agent should read.
    pub fn psi_path(&self, host: &str) -> PathBuf {
        self.cgroup_dir(host).join("cpu.pressure")
    }

    /// Name of a lab namespace (for `nsenter --net=/run/netns/<name>` and logs).
    pub fn netns_name(&self, target: &NsTarget) -> Result<String> {
        Ok(match target {
            NsTarget::Host(h) => names::netns_host(&self.id, self.index(h)?),
            NsTarget::Rogue => names::netns_rogue(&self.id),
            NsTarget::Switch => names::netns_switch(&self.id),
        })
    }

    /// Path of a lab namespace's handle under /run/netns.
    pub fn netns_path(&self, target: &NsTarget) -> Result<PathBuf> {
        Ok(netns::path(&self.netns_name(target)?))
    }

    /// Reads a sysctl under /proc/sys/net (e.g. `ipv6/conf/ic0/disable_ipv6`) as the
    /// target namespace sees it.
    pub fn read_sysctl(&self, target: &NsTarget, key: &str) -> Result<String> {
        netns::read_sysctl(&self.netns_name(target)?, key)
    }

    /// Starts `cmd` inside `host`'s network namespace and cgroup; the caller reaps it.
    pub fn spawn(&self, host: &str, cmd: Command) -> io::Result<Child> {
        let target = NsTarget::host(host);
        let ns = self
            .netns_path(&target)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:#}")))?;
        self.spawn_in(&ns, &self.cgroup_dir(host), cmd)
    }

    /// Starts `cmd` inside the rogue namespace and its cgroup; the caller reaps it.
    pub fn spawn_rogue(&self, cmd: Command) -> io::Result<Child> {
        self.spawn_in(
            &netns::path(&names::netns_rogue(&self.id)),
            &self.cgroup.join(names::ROGUE),
            cmd,
        )
    }

    fn spawn_in(&self, ns: &Path, cgroup: &Path, cmd: Command) -> io::Result<Child> {
        // A child joining a frozen cgroup freezes before exec, and std's spawn waits for
        // the exec: refuse instead of blocking the caller forever.
        if cgroup::is_frozen(cgroup).unwrap_or(false) {
            return Err(io::Error::other(format!(
                "{} is frozen (hung host); thaw it before spawning",
                cgroup.display()
            )));
        }
        let ns_file = spawn::open_netns(ns)?;
        let procs = spawn::open_procs(cgroup)?;
        let what = spawn::describe(&cmd);
        spawn::spawn_placed(cmd, &ns_file, Some(&procs)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("spawning `{what}` in {}: {e}", ns.display()),
            )
        })
    }

    /// Runs `f` on a fresh thread inside the target namespace; sockets it creates stay there.
    pub fn run_in_netns<T: Send>(
        &self,
        target: NsTarget,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T> {
        let path = self.netns_path(&target)?;
        spawn::in_netns(&path, f)
            .with_context(|| format!("running in namespace {}", path.display()))
    }

    /// Tears the lab down: kills every process in its cgroups, removes its cgroups,
    /// namespaces and run directory. Safe to call more than once.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        self.stop_all_loads();
        self.stop_all_bmcs();
        if let Err(e) = cleanup::remove_lab(&self.id) {
            tracing::warn!("destroying lab {}: {e:#}", self.id);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.destroy()
    }
}
