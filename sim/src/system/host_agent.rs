//! The adapter of one host agent: the real host core
//! ([`hvcluster_common::host::HostCore`]) built from a [`ClusterConfig`] as `hv-hostd`
//! builds it, driven as its driver loop drives it.
//!
//! What the adapter does in the driver's place: it reads a received heartbeat's sections
//! once and lends them to the core ([`HostCore::heard`], as the agent's frame handler
//! does); it writes the core's sections into the heartbeat it sends (kept within one
//! frame by [`heartbeat_budget::fit`]); it starts a new incarnation when the core asks
//! ([`Effect::Rejoin`]); and it serves the operator's confirm-down through the core's
//! fencing, as the agent's admin handler does. Every other effect goes to the world
//! (`super::world`), which performs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::fencing::{DownRecord, Fencing, FencingConfig};
use hvcluster_common::heartbeat_budget::{self, BUDGET};
use hvcluster_common::host::{Effect, Effects, Event, HostCore, HostCoreConfig};
use hvcluster_common::host_heartbeat::HostSections;
use hvcluster_common::membership::{Heartbeat, HostState, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::Accepted;

/// Heartbeat interval of the simulated hosts.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// Silence before a host is Failed.
pub const DEAD_AFTER: Duration = Duration::from_millis(1200);
/// How long a kdump level waits for a panic notice.
pub const KDUMP_WAIT: Duration = Duration::from_millis(2000);
/// The weaker side's delay in a two-node race.
pub const RACE_DELAY: Duration = Duration::from_millis(1500);
/// The guest cluster's name in the hosts' configuration.
pub const GUEST_CLUSTER: &str = "sim";

/// Cluster-wide settings every host agent of a world shares.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Number of hosts (ids 1..=n).
    pub hosts: usize,
    /// Number of guest nodes of the guest cluster (ids 1..=m).
    pub guests: usize,
    /// A kdump level comes before the power fence.
    pub kdump_level: bool,
    /// A flaw for the checker's own test: every agent's quorum rule counts one vote as a
    /// majority, so fencing sees a quorate view always; the checker judges with the
    /// true rule.
    pub fence_without_quorum: bool,
}

/// Host `id`'s heartbeat address.
fn host_address(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))
}

/// The address host `id`'s crash kernel sends its panic notices from (configured as
/// its `kdump_addresses`).
pub fn kdump_source(id: NodeId) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, id as u8)), 4000)
}

/// The name of guest node `id` and of its domain.
pub fn guest_names(id: NodeId) -> (String, String) {
    (format!("g{id}"), format!("vm-g{id}"))
}

/// The cluster configuration every simulated host runs: the hosts with their heartbeat
/// and crash-kernel addresses and fence levels (kdump first in some worlds, then the
/// BMC), the sim's timings, and the guest cluster whose nodes may link and kill.
pub fn cluster_config(s: &HostSettings) -> ClusterConfig {
    let mut levels = Vec::new();
    if s.kdump_level {
        levels.push(json!(["kdump"]));
    }
    levels.push(json!(["bmc"]));
    let hosts: Vec<_> = (1..=s.hosts as NodeId)
        .map(|i| {
            json!({
                "name": format!("h{i}"),
                "node_id": i,
                "addresses": { "ic0": host_address(i) },
                "kdump_addresses": [kdump_source(i).ip()],
                "fence_levels": levels,
            })
        })
        .collect();
    let members: Vec<_> = (1..=s.guests as NodeId)
        .map(|i| {
            let (node, domain) = guest_names(i);
            json!({ "node": node, "node_id": i, "domain": domain })
        })
        .collect();
    let dead = DEAD_AFTER.as_millis() as u64;
    let config = json!({
        "cluster": { "name": "sim", "key_file": "sim.key" },
        "heartbeat": {
            "interval_ms": INTERVAL.as_millis() as u64,
            "suspect_after_ms": dead / 2,
            "dead_after_ms": dead,
            "rejoin_heartbeats": 3,
        },
        "load_watchdog": { "hung_limit_ms": dead },
        "kdump": { "enabled": true },
        "fencing": {
            "race_delay_ms": RACE_DELAY.as_millis() as u64,
            "retry_backoff_ms": 500,
            "max_backoff_ms": 4000,
        },
        "interconnect": [{ "name": "ic0" }],
        "fence_device": [
            { "name": "kdump", "kind": "kdump", "wait_ms": KDUMP_WAIT.as_millis() as u64 },
            { "name": "bmc", "kind": "agent", "agent": "/bin/true" },
        ],
        "host": hosts,
        "guest_cluster": [{ "name": GUEST_CLUSTER, "key_file": "sim-guests.key", "member": members }],
    });
    serde_json::from_value(config).expect("the simulated hosts' configuration is valid")
}

/// One host agent: its core and what its driver keeps.
#[derive(Debug)]
pub struct HostAgent {
    core: HostCore,
    incarnation: u64,
    /// The true quorum rule (the flawed agent's core runs another).
    rules: QuorumRules,
    flawed: bool,
    started_at: Duration,
}

impl HostAgent {
    /// An agent starting at `now` under `incarnation`, with the DOWN records its journal
    /// held; its kill orders are numbered after `first_order`.
    pub fn start(
        me: NodeId,
        config: &ClusterConfig,
        flawed: bool,
        (incarnation, first_order): (u64, u64),
        now: Duration,
        journal: &[DownRecord],
    ) -> Self {
        let digest = config.digest();
        let mut mcfg = MembershipConfig::from_cluster(config, me, digest);
        let rules = mcfg.quorum;
        let mut core = if flawed {
            mcfg.quorum = QuorumRules {
                total_votes: 1,
                two_node: false,
                wait_for_all: false,
            };
            let mut membership = Membership::new(mcfg, incarnation, now);
            membership.set_panic_probe(Duration::from_millis(config.kdump.probe_ms));
            let fencing = Fencing::new(FencingConfig::from_cluster(config, me));
            let cfg = HostCoreConfig::from_cluster(config, me);
            HostCore::compose(cfg, membership, fencing, first_order)
        } else {
            HostCore::new(config, me, (digest, incarnation), now, first_order)
        };
        let downs = journal.to_vec();
        let _ = core.step(now, Event::StateLoaded { downs });
        HostAgent {
            core,
            incarnation,
            rules,
            flawed,
            started_at: now,
        }
    }

    /// Hands one event to the core; returns what the world must do.
    pub fn step(&mut self, now: Duration, event: Event) -> Effects {
        let out = self.core.step(now, event);
        self.rejoins(now, out)
    }

    /// Time passes.
    pub fn tick(&mut self, now: Duration) -> Effects {
        let out = self.core.tick(now);
        self.rejoins(now, out)
    }

    /// An authenticated heartbeat of `from`, judged by the replay window: its sections
    /// are read once and lent to the core, as the agent's frame handler does.
    pub fn heard(
        &mut self,
        now: Duration,
        (from, incarnation): (NodeId, u64),
        accepted: Accepted,
        hb: &Heartbeat,
    ) -> Effects {
        let (sections, _issues) = HostSections::read(hb);
        let out = self
            .core
            .heard(now, (from, incarnation), accepted, (hb, &sections));
        self.rejoins(now, out)
    }

    /// `hvctl host confirm-down`, through the core's fencing as the admin handler does:
    /// the effects to perform, or the refusal.
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Effects, String> {
        if target == self.core.me() {
            return Err("this host is evidently running".into());
        }
        let (_, fence) = self.core.operator_parts();
        fence.confirm_down(target).map_err(|r| r.to_string())
    }

    /// The agent leaves the cluster (SIGTERM, `hvctl host leave`), as the agent's
    /// leave does: its heartbeats say so from now on.
    pub fn leave(&mut self, now: Duration) -> Effects {
        let out = self.core.leave(now);
        self.rejoins(now, out)
    }

    /// A rejoin the core asks for is done at once (the new incarnation is persisted by
    /// the world when the agent stops); its effects follow in place.
    fn rejoins(&mut self, now: Duration, effects: Effects) -> Effects {
        let mut out = Vec::with_capacity(effects.len());
        for e in effects {
            if e == Effect::Rejoin {
                self.incarnation += 1;
                let incarnation = self.incarnation;
                let more = self.core.step(now, Event::Rejoined { incarnation });
                out.extend(self.rejoins(now, more));
            } else {
                out.push(e);
            }
        }
        out
    }

    /// The heartbeat to send now, with the core's sections written in (within one
    /// frame); `runs_here` says whether a guest's domain runs on this host.
    pub fn heartbeat(&mut self, now: Duration, runs_here: impl Fn(&str) -> bool) -> Heartbeat {
        let (mut hb, mut sections) = self.core.heartbeat(now, 0, runs_here);
        heartbeat_budget::fit(&mut hb, &mut sections, BUDGET);
        hb
    }

    /// The core, to read.
    pub fn core(&self) -> &HostCore {
        &self.core
    }

    /// The incarnation this agent runs under.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether this agent's partition is quorate by the true rule (what its membership
    /// says, unless the flawed rule runs).
    pub fn quorate(&self) -> bool {
        let m = self.core.membership();
        if !self.flawed {
            return m.quorum().quorate;
        }
        let present = m
            .peers(self.started_at)
            .iter()
            .filter(|p| m.state_of(p.node).is_some_and(|s| s.present()))
            .count() as u32;
        self.rules.evaluate(1 + present, true).quorate
    }

    /// The DOWN record of `target`, if this agent holds it DOWN.
    pub fn down(&self, target: NodeId) -> Option<&DownRecord> {
        self.core.fencing().machine().down(target)
    }

    /// Whether `node` is present (Up, Suspect) as this agent sees it at `now`.
    pub fn sees_present(&self, node: NodeId, now: Duration) -> bool {
        node == self.core.me()
            || self
                .core
                .membership()
                .peers(now)
                .iter()
                .any(|p| p.node == node && p.state.present())
    }

    /// Whether this agent is the coordinator: quorate and the lowest present node.
    pub fn coordinator(&self, now: Duration) -> bool {
        self.quorate() && self.core.coordinator(now) == self.core.me()
    }

    /// Whether `node` is present (Up, Suspect) or Joining as this agent sees it.
    pub fn sees_alive(&self, node: NodeId) -> bool {
        self.state(node)
            .is_some_and(|s| s.present() || s == HostState::Joining)
    }

    /// When this agent started.
    pub fn started_at(&self) -> Duration {
        self.started_at
    }

    /// Whether `node` is Left as this agent sees it.
    pub fn holds_left(&self, node: NodeId) -> bool {
        self.core.membership().state_of(node) == Some(HostState::Left)
    }

    /// Whether `node` is Failed as this agent sees it.
    pub fn failed(&self, node: NodeId) -> bool {
        matches!(self.state(node), Some(HostState::Failed(_)))
    }

    fn state(&self, node: NodeId) -> Option<HostState> {
        self.core.membership().state_of(node)
    }
}
