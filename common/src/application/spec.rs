//! What the engine needs to know about each application, derived from `guest.toml`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::guest::{
    ApplicationConfig, CmdlineFlag, GuestConfig, ResourceKind, StandbyTransition, SwitchTrigger,
    DEFAULT_CHECK_INTERVAL_S,
};
use crate::config::NodeId;

/// One application as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Application name.
    pub name: String,
    /// Nodes it may run on, most preferred first.
    pub nodes: Vec<NodeId>,
    /// AutoStartUp.
    pub auto_start_up: bool,
    /// AutoSwitchOver triggers; empty means No.
    pub switch_on: BTreeSet<SwitchTrigger>,
    /// PersistentFault.
    pub persistent_fault: bool,
    /// HaltFlag.
    pub halt_flag: bool,
    /// OnlinePriority.
    pub online_priority: bool,
    /// StandbyTransitions.
    pub standby_transitions: Vec<StandbyTransition>,
    /// Restarts on the same node within `restart_window` before switching.
    pub restart_limit: u32,
    /// Window of the restart budget.
    pub restart_window: Duration,
    /// Resources in dependency order.
    pub resources: Vec<ResourceSpec>,
}

/// One resource as the engine sees it (how to run it is the runner's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// Resource name.
    pub name: String,
    /// Checked periodically (not NULLDETECTOR).
    pub monitored: bool,
    /// Can be Standby (STANDBYCAPABLE).
    pub standby_capable: bool,
    /// Restart on a fault before switching (AUTORECOVER).
    pub auto_recover: bool,
    /// Time between two checks.
    pub check_interval: Duration,
}

impl AppSpec {
    /// The engine's view of every application of a validated configuration.
    pub fn from_config(config: &GuestConfig) -> Vec<AppSpec> {
        Self::from_applications(&config.applications, |name| {
            config.node(name).map(|n| n.node_id)
        })
    }

    /// The engine's view of validated `[[application]]` entries, whose node names
    /// `id_of` turns into node ids (guest nodes, or hosts for host-side applications).
    pub fn from_applications(
        applications: &[ApplicationConfig],
        id_of: impl Fn(&str) -> Option<NodeId>,
    ) -> Vec<AppSpec> {
        applications
            .iter()
            .map(|a| AppSpec {
                name: a.name.clone(),
                nodes: a.nodes.iter().filter_map(|n| id_of(n)).collect(),
                auto_start_up: a.auto_start_up,
                switch_on: a.auto_switch_over.iter().copied().collect(),
                persistent_fault: a.persistent_fault,
                halt_flag: a.halt_flag,
                online_priority: a.online_priority,
                standby_transitions: a.standby_transitions.clone(),
                restart_limit: a.restart_limit,
                restart_window: Duration::from_secs(a.restart_window_s),
                resources: a
                    .resources
                    .iter()
                    .map(|r| {
                        let flag = |f| r.flags.contains(&f);
                        ResourceSpec {
                            name: r.name.clone(),
                            monitored: !(r.kind == ResourceKind::Cmdline
                                && (flag(CmdlineFlag::NullDetector) || r.check.is_none())),
                            standby_capable: flag(CmdlineFlag::StandbyCapable),
                            auto_recover: flag(CmdlineFlag::AutoRecover),
                            check_interval: Duration::from_secs(
                                r.check_interval_s.unwrap_or(DEFAULT_CHECK_INTERVAL_S),
                            ),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Whether `trigger` may switch this application by itself.
    pub fn switches_on(&self, trigger: SwitchTrigger) -> bool {
        self.switch_on.contains(&trigger)
    }
}

#[cfg(test)]
impl AppSpec {
    /// For tests: an application on `nodes` (most preferred first) with `resources`
    /// checked resources `r0`, `r1`…, started at start-up and switching on host and
    /// resource failures.
    pub(crate) fn for_tests(name: &str, nodes: &[NodeId], resources: usize) -> AppSpec {
        AppSpec {
            name: name.into(),
            nodes: nodes.to_vec(),
            auto_start_up: true,
            switch_on: [SwitchTrigger::HostFailure, SwitchTrigger::ResourceFailure]
                .into_iter()
                .collect::<BTreeSet<_>>(),
            persistent_fault: false,
            halt_flag: false,
            online_priority: false,
            standby_transitions: Vec::new(),
            restart_limit: 0,
            restart_window: Duration::from_secs(600),
            resources: (0..resources)
                .map(|r| ResourceSpec {
                    name: format!("r{r}"),
                    monitored: true,
                    standby_capable: false,
                    auto_recover: false,
                    check_interval: Duration::from_secs(1),
                })
                .collect(),
        }
    }
}
