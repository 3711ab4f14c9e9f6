//! External programs the lab drives inside hosts: stress-ng for load, fence_kdump_send for
//! panic notices, ping for ad-hoc reachability checks.

use super::{cgroup, names, netns, spawn, Lab};
use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where Debian's fence-agents package installs the kdump notice sender.
const FENCE_KDUMP_SEND: &str = "/usr/libexec/fence-agents/fence_kdump_send";
/// Subgroup of a host cgroup holding its load generators.
const LOAD_CGROUP: &str = "load";

/// What `stress-ng` load to put on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// CPU stressor workers.
    pub cpu: u32,
    /// Memory stressor workers.
    pub vm: u32,
    /// Memory per memory worker, in MiB.
    pub vm_mib: u32,
    /// I/O (sync) stressor workers.
    pub io: u32,
    /// How long stress-ng runs before stopping by itself.
    pub seconds: u64,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            cpu: 1,
            vm: 1,
            vm_mib: 128,
            io: 1,
            seconds: 60,
        }
    }
}

impl LoadSpec {
    /// The default mix (1 cpu, 1 vm of 128 MiB, 1 io) for `seconds`.
    pub fn for_seconds(seconds: u64) -> LoadSpec {
        LoadSpec {
            seconds,
            ..LoadSpec::default()
        }
    }

    /// The stress-ng arguments for this load.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (flag, n) in [("--cpu", self.cpu), ("--vm", self.vm), ("--io", self.io)] {
            if n > 0 {
                a.push(flag.to_string());
                a.push(n.to_string());
            }
        }
        if self.vm > 0 {
            a.push("--vm-bytes".into());
            a.push(format!("{}M", self.vm_mib));
        }
        a.push("--timeout".into());
        a.push(format!("{}s", self.seconds));
        a
    }
}

/// A `ping` of one echo with a one-second wait, to spawn inside a host; uses busybox's
/// applet where iputils is not installed.
pub fn ping_command(to: IpAddr) -> Command {
    let ping = netns::program("ping");
    let mut cmd = if ping.is_absolute() {
        let mut c = Command::new(ping);
        c.arg("-n");
        c
    } else {
        let mut c = Command::new(netns::program("busybox"));
        c.arg("ping");
        c
    };
    cmd.args(["-c", "1", "-W", "1"]).arg(to.to_string());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

impl Lab {
    /// Starts the default `stress-ng` mix on `host` for `seconds` (see [`LoadSpec`]).
    pub fn start_load(&self, host: &str, seconds: u64) -> Result<()> {
        self.start_load_spec(host, &LoadSpec::for_seconds(seconds))
    }

    /// Starts `stress-ng` in `host`'s namespace, in a `load` subgroup of its cgroup (so the
    /// host's PSI sees it and `stop_load` can end every worker at once).
    pub fn start_load_spec(&self, host: &str, spec: &LoadSpec) -> Result<()> {
        let i = self.index(host)?;
        if self.is_hung(host)? {
            // A process joining a frozen cgroup would block our spawn until a thaw.
            bail!("cannot start load on {host}: it is hung (frozen)");
        }
        let group = self.cgroup_dir(host).join(LOAD_CGROUP);
        cgroup::create(&group)?;
        let mut cmd = Command::new(netns::program("stress-ng"));
        cmd.args(spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ns = netns::path(&names::netns_host(&self.id, i));
        let what = spawn::describe(&cmd);
        let child = spawn::spawn_placed(
            cmd,
            &spawn::open_netns(&ns)?,
            Some(&spawn::open_procs(&group)?),
        )
        .with_context(|| format!("starting `{what}` on {host}"))?;
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(i)
            .or_default()
            .push(child);
        Ok(())
    }

    /// Stops every load started on `host` (no-op when there is none).
    pub fn stop_load(&self, host: &str) {
        let Ok(i) = self.index(host) else { return };
        let group = self.cgroup_dir(host).join(LOAD_CGROUP);
        if group.exists() {
            if let Err(e) = cgroup::kill(&group) {
                tracing::warn!("stopping load on {host}: {e:#}");
            }
        }
        self.reap_load(i);
    }

    /// Reaps load processes of host `i` that were already killed.
    pub(super) fn reap_load(&self, i: usize) {
        let children = self
            .loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&i);
        for mut c in children.unwrap_or_default() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the load on every host; used by `destroy`.
    pub(super) fn stop_all_loads(&self) {
        for h in self.host_names() {
            self.stop_load(&h);
        }
    }

    /// Sends one fence_kdump panic notice from `host`'s namespace to `targets`, as a
    /// crashed host's kdump kernel would; waits for the sender to finish.
    pub fn kdump_notice(&self, host: &str, targets: &[IpAddr], port: u16) -> Result<()> {
        let ns = self.netns_path(&super::NsTarget::host(host))?;
        send_kdump(&ns, targets, port).with_context(|| format!("kdump notice from {host}"))
    }

    /// Sends one fence_kdump notice from the rogue namespace (a forged or stray notice).
    pub fn kdump_notice_from_rogue(&self, targets: &[IpAddr], port: u16) -> Result<()> {
        let ns = self.netns_path(&super::NsTarget::Rogue)?;
        send_kdump(&ns, targets, port).context("kdump notice from the rogue namespace")
    }
}

/// Runs fence_kdump_send in a namespace but outside any host cgroup: the "crashed" host's
/// cgroup may be killed or frozen, and the notice must go out anyway.
fn send_kdump(ns: &Path, targets: &[IpAddr], port: u16) -> Result<()> {
    if targets.is_empty() {
        bail!("no targets for the kdump notice");
    }
    let mut cmd = Command::new(FENCE_KDUMP_SEND);
    cmd.args(["-p", &port.to_string(), "-c", "1", "-i", "1"]);
    cmd.args(targets.iter().map(|t| t.to_string()));
    // With -c 1 the sender exits right after sending; the timeout only guards a hang.
    spawn::run_tool_ok(ns, cmd, None, Duration::from_secs(5))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_load_args() {
        let a = LoadSpec::for_seconds(30).args().join(" ");
        assert_eq!(a, "--cpu 1 --vm 1 --io 1 --vm-bytes 128M --timeout 30s");
    }

    #[test]
    fn cpu_only_load_has_no_vm_bytes() {
        let spec = LoadSpec {
            cpu: 2,
            vm: 0,
            io: 0,
            ..LoadSpec::for_seconds(5)
        };
        assert_eq!(spec.args().join(" "), "--cpu 2 --timeout 5s");
    }
}
