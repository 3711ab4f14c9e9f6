//! Host faults: power loss and hangs through the host's cgroup, partitions and loss
//! through nftables in the host's namespace.

use super::{cgroup, names, netns, nft, spawn, Lab};
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Duration;

const NFT_TIMEOUT: Duration = Duration::from_secs(10);

impl Lab {
    /// Cuts power: SIGKILLs every process of the host at once and waits until none is left.
    pub fn power_loss(&self, host: &str) -> Result<()> {
        let dir = self.cgroup_dir(host);
        cgroup::kill(&dir).with_context(|| format!("power loss of {host}"))?;
        // A host that was hung when it lost power must come back running, or whatever
        // the caller restarts would start frozen.
        cgroup::thaw(&dir).with_context(|| format!("power loss of {host}"))?;
        self.reap_load(self.index(host)?);
        Ok(())
    }

    /// Prepares a powered-off host to be started again: no faults, not frozen.
    pub fn power_on_ready(&self, host: &str) -> Result<()> {
        let dir = self.cgroup_dir(host);
        if cgroup::is_frozen(&dir)? {
            cgroup::thaw(&dir).with_context(|| format!("powering on {host}"))?;
        }
        self.clear_faults(host)
    }

    /// Hangs the host: freezes all its processes and waits until the kernel says frozen.
    pub fn hang(&self, host: &str) -> Result<()> {
        cgroup::freeze(&self.cgroup_dir(host)).with_context(|| format!("hanging {host}"))
    }

    /// Ends a hang: thaws all the host's processes.
    pub fn thaw(&self, host: &str) -> Result<()> {
        cgroup::thaw(&self.cgroup_dir(host)).with_context(|| format!("thawing {host}"))
    }

    /// Whether the host is currently frozen (hung).
    pub fn is_hung(&self, host: &str) -> Result<bool> {
        cgroup::is_frozen(&self.cgroup_dir(host))
    }

    /// Drops everything in and out of `host`'s interface on interconnect `ic`.
    pub fn cut_link(&self, host: &str, ic: usize) -> Result<()> {
        self.check_ic(ic)?;
        self.update_faults(host, |f| {
            f.cut.insert(ic);
        })
        .with_context(|| format!("cutting link ic{ic} of {host}"))
    }

    /// Undoes [`Lab::cut_link`].
    pub fn restore_link(&self, host: &str, ic: usize) -> Result<()> {
        self.check_ic(ic)?;
        self.update_faults(host, |f| {
            f.cut.remove(&ic);
        })
        .with_context(|| format!("restoring link ic{ic} of {host}"))
    }

    /// Drops all traffic in and out on every lab interface of `host`.
    pub fn isolate(&self, host: &str) -> Result<()> {
        self.update_faults(host, |f| f.isolated = true)
            .with_context(|| format!("isolating {host}"))
    }

    /// Undoes [`Lab::isolate`] (other faults of the host stay).
    pub fn heal(&self, host: &str) -> Result<()> {
        self.update_faults(host, |f| f.isolated = false)
            .with_context(|| format!("healing {host}"))
    }

    /// Packets from `from` stop reaching `to`; the other direction is untouched.
    pub fn one_way_cut(&self, from: &str, to: &str) -> Result<()> {
        let i = self.index(from)?;
        if from == to {
            bail!("one-way cut from {from} to itself");
        }
        let addrs = (0..self.spec.interconnects)
            .map(|k| names::host_addr(i, k).into())
            .collect();
        self.update_faults(to, |f| {
            f.drop_from.insert(from.to_string(), addrs);
        })
        .with_context(|| format!("cutting {from} -> {to}"))
    }

    /// Undoes [`Lab::one_way_cut`].
    pub fn restore_one_way(&self, from: &str, to: &str) -> Result<()> {
        self.index(from)?;
        self.update_faults(to, |f| {
            f.drop_from.remove(from);
        })
        .with_context(|| format!("restoring {from} -> {to}"))
    }

    /// Random loss of `percent` % of packets in both directions on all of `host`'s lab
    /// interfaces; 0 removes it.
    pub fn loss(&self, host: &str, percent: u8) -> Result<()> {
        if percent > 100 {
            bail!("loss of {percent}% on {host}: percent must be 0..=100");
        }
        self.update_faults(host, |f| f.loss = (percent > 0).then_some(percent))
            .with_context(|| format!("setting {percent}% loss on {host}"))
    }

    /// Removes every network fault applied in `host`'s namespace (cuts, isolation,
    /// one-way cuts towards it, loss).
    pub fn clear_faults(&self, host: &str) -> Result<()> {
        self.update_faults(host, |f| *f = nft::FaultSet::default())
            .with_context(|| format!("clearing faults of {host}"))
    }

    /// The host's current nftables ruleset as `nft list ruleset` prints it (for logs).
    pub fn nft_ruleset(&self, host: &str) -> Result<String> {
        let ns = self.netns_path(&super::NsTarget::host(host))?;
        let mut cmd = Command::new(netns::program("nft"));
        cmd.args(["list", "ruleset"]);
        Ok(spawn::run_tool_ok(&ns, cmd, None, NFT_TIMEOUT)?.stdout)
    }

    /// Pids in the host's own cgroup (not its load subgroup).
    pub fn host_pids(&self, host: &str) -> Result<Vec<i32>> {
        cgroup::pids(&self.cgroup_dir(host))
    }

    /// Applies a change to the host's fault set and replaces its nftables table to match.
    fn update_faults(&self, host: &str, change: impl FnOnce(&mut nft::FaultSet)) -> Result<()> {
        let i = self.index(host)?;
        // Held across `nft` so concurrent callers cannot apply their sets out of order.
        let mut all = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = all.get(&i).cloned().unwrap_or_default();
        change(&mut next);
        let ifaces: Vec<String> = (0..self.spec.interconnects).map(names::host_if).collect();
        let script = nft::render(&next, &ifaces);
        let ns = netns::path(&names::netns_host(&self.id, i));
        let mut cmd = Command::new(netns::program("nft"));
        cmd.args(["-f", "-"]);
        spawn::run_tool_ok(&ns, cmd, Some(&script), NFT_TIMEOUT)
            .with_context(|| format!("applying nftables ruleset in {}:\n{script}", ns.display()))?;
        all.insert(i, next);
        Ok(())
    }
}
