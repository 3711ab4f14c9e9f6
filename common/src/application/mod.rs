//! The userApplication engine, as a pure state machine.
//!
//! Every guest node runs one [`Engine`]. It is fed ticks, resource-operation outcomes,
//! what peers gossip in their heartbeats, node states and operator commands, each with
//! the current time, and returns [`AppAction`]s: run a resource operation, report an
//! event, persist, announce (send heartbeats now), have a node killed.
//!
//! **Placement.** Where an application should run is a small replicated register per
//! application, a [`Placement`] with a [`Version`] (epoch, issuer). Every node gossips
//! the placements it knows; the highest version wins. The coordinator (the UP node with
//! the lowest id; a new one takes over when it goes) writes the automatic decisions:
//! start-up, failover on resource failure or node failure. Operator commands are
//! written by the node they are given to.
//!
//! **Safety does not rest on the coordinator.** A node starts an application only when
//! the placement names it and every other node of the application has acknowledged
//! that placement's version (or a later one) while reporting the application inactive
//! there, or is proved dead. A node that sees a placement naming another node stops
//! first and acknowledges only once stopped; a stop that fails leaves it Faulted and
//! unacknowledged, so nothing starts elsewhere until that node is proved dead. Hence
//! an application is never Online, or starting, on two nodes.

mod actions;
mod coordinator;
mod local;
pub mod nodes;
pub mod outcome;
mod placement;
mod report;
mod section;
pub mod spec;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::guest::SwitchTrigger;
use crate::config::NodeId;

pub use actions::{AppAction, AppEvent, Command, Persistent, ResourceOp};
use local::Local;
pub use nodes::{DownProof, GuestNodes, NodeChange, NodeView};
pub use outcome::{OfflineReason, OpKind, OpOutcome, ResourceState};
pub use placement::{Placement, PlacementReason, Version};
use report::shown_state;
pub use report::{Activity, AppReport, AppState, AppView, Gossip};
pub use section::{GuestHeartbeat, Migrating, Proofs};
pub use spec::{AppSpec, ResourceSpec};

#[derive(Debug)]
struct App {
    spec: AppSpec,
    placement: Placement,
    local: Local,
    reports: BTreeMap<NodeId, (u64, AppReport)>,
    kill_requested: Option<NodeId>,
    waiting: Option<String>,
    /// The coordinator holds the application where it ran (its node is LEFTCLUSTER):
    /// the reason, reported once.
    held: Option<String>,
    shown: AppState,
}

/// How the engine's messages tell a guest cluster's operator to prove a node down.
const GUEST_DOWN_COMMAND: &str = "hvctl node down";

/// The userApplication engine of one node (a guest, or a host for host-side
/// applications).
#[derive(Debug)]
pub struct Engine {
    me: NodeId,
    apps: Vec<App>,
    nodes: Vec<NodeView>,
    /// Per peer, from its last gossip (with its incarnation): whether it holds this
    /// node proved dead.
    holds_me_down: BTreeMap<NodeId, (u64, bool)>,
    next_op: u64,
    leaving: bool,
    names: BTreeMap<NodeId, String>,
    /// The command that proves a node down, for the messages the engine writes.
    down_command: &'static str,
    /// Switchovers are held (a guest of the cluster is being migrated): why.
    switch_hold: Option<String>,
}

impl Engine {
    /// An engine for node `me` at `now`, resuming `persistent`. Every application
    /// starts by probing its resources.
    pub fn new(me: NodeId, specs: Vec<AppSpec>, persistent: &Persistent, now: Duration) -> Self {
        let apps = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let placement = persistent
                    .placements
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or_default();
                let fault = persistent
                    .faults
                    .get(&spec.name)
                    .filter(|_| spec.persistent_fault)
                    .filter(|(_, clear)| *clear >= placement.clear)
                    .cloned();
                let local = Local::new(&spec, index, fault, now);
                App {
                    spec,
                    placement,
                    local,
                    reports: BTreeMap::new(),
                    kill_requested: None,
                    held: None,
                    waiting: None,
                    shown: AppState::Wait,
                }
            })
            .collect();
        Engine {
            me,
            apps,
            nodes: Vec::new(),
            holds_me_down: BTreeMap::new(),
            next_op: 1,
            leaving: false,
            names: BTreeMap::new(),
            down_command: GUEST_DOWN_COMMAND,
            switch_hold: None,
        }
    }

    /// Holds (with the reason) or releases every switchover: while a node of the
    /// cluster is being migrated, no application moves between nodes because of a
    /// resource failure or an operator's switch (a node proved dead still hands its
    /// applications over). Starts, stops and restarts in place go on.
    pub fn set_switch_hold(&mut self, why: Option<String>) {
        self.switch_hold = why;
    }

    /// Why an application is between two states now (starting, stopping, or placed on
    /// a node that does not run it yet), if one is: a migration must not begin then.
    pub fn transition(&self) -> Option<String> {
        for (i, app) in self.apps.iter().enumerate() {
            if app.placement.maintenance {
                continue;
            }
            let name = &app.spec.name;
            for &n in &app.spec.nodes {
                let what = match self.activity_on(i, n) {
                    Some(Activity::Starting) => "starting",
                    Some(Activity::Stopping) => "stopping",
                    _ => continue,
                };
                return Some(self.named(format!("{name} is {what} on node {n}")));
            }
            if let Some(t) = app.placement.target {
                let heard = t == self.me || self.view(t).is_some_and(|v| v.heard);
                let there = self.activity_on(i, t);
                let settled = matches!(
                    there,
                    Some(Activity::Online | Activity::Standby | Activity::Faulted { .. })
                );
                if heard && !settled {
                    return Some(self.named(format!("{name} is switching to node {t}")));
                }
            }
        }
        None
    }

    /// The operator command that proves a node down, as the engine's messages name it
    /// (`hvctl node down` for guests; the host agent's engine uses `hvctl host
    /// confirm-down`).
    pub fn set_down_command(&mut self, command: &'static str) {
        self.down_command = command;
    }

    /// Node names for the messages the engine writes (otherwise `node N`).
    pub fn set_names(&mut self, names: BTreeMap<NodeId, String>) {
        self.names = names;
    }

    /// Replaces every `node N` of an engine message by the node's name.
    fn named(&self, message: String) -> String {
        if self.names.is_empty() {
            return message;
        }
        let mut out = String::new();
        let mut rest = message.as_str();
        while let Some(pos) = rest.find("node ") {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 5..];
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            match digits
                .parse::<NodeId>()
                .ok()
                .and_then(|id| self.names.get(&id))
            {
                Some(name) => {
                    out.push_str(name);
                    rest = &after[digits.len()..];
                }
                None => {
                    out.push_str("node ");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        if self.down_command != GUEST_DOWN_COMMAND {
            out = out.replace(GUEST_DOWN_COMMAND, self.down_command);
        }
        out
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Application names, in configuration order.
    pub fn app_names(&self) -> Vec<String> {
        self.apps.iter().map(|a| a.spec.name.clone()).collect()
    }

    /// Index of the application called `name`.
    pub fn app_index(&self, name: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.spec.name == name)
    }

    /// What to gossip in the next heartbeats.
    pub fn gossip(&self) -> Gossip {
        Gossip {
            placements: self.apps.iter().map(|a| a.placement.clone()).collect(),
            reports: self.apps.iter().map(|a| self.report_of(a)).collect(),
            held_down: self
                .nodes
                .iter()
                .filter(|v| v.proved_down)
                .map(|v| v.id)
                .collect(),
        }
    }

    /// What must survive a restart.
    pub fn persistent(&self) -> Persistent {
        Persistent {
            placements: self
                .apps
                .iter()
                .map(|a| (a.spec.name.clone(), a.placement.clone()))
                .collect(),
            faults: self
                .apps
                .iter()
                .filter(|a| a.spec.persistent_fault)
                .filter_map(|a| Some((a.spec.name.clone(), a.local.fault.clone()?)))
                .collect(),
        }
    }

    /// Whether no application runs here any more (for a clean shutdown).
    pub fn all_inactive(&self) -> bool {
        self.apps
            .iter()
            .all(|a| a.local.activity().inactive() && a.local.running.is_none())
    }

    /// Whether any operation runs here.
    pub fn busy(&self) -> bool {
        self.apps.iter().any(|a| a.local.running.is_some())
    }

    /// The current node views changed.
    pub fn set_nodes(&mut self, now: Duration, views: Vec<NodeView>) -> Vec<AppAction> {
        for v in &views {
            if !v.heard {
                // What an unheard node said no longer describes it.
                for app in &mut self.apps {
                    app.reports.remove(&v.id);
                }
                self.holds_me_down.remove(&v.id);
            }
        }
        self.nodes = views;
        self.step(now)
    }

    /// A peer's gossip, from incarnation `incarnation` of node `from`.
    pub fn on_gossip(
        &mut self,
        now: Duration,
        from: NodeId,
        incarnation: u64,
        gossip: &Gossip,
    ) -> Vec<AppAction> {
        let mut out = Vec::new();
        if gossip.placements.len() != self.apps.len() || gossip.reports.len() != self.apps.len() {
            return out;
        }
        let known = self.holds_me_down.get(&from).map_or(0, |(inc, _)| *inc);
        if incarnation >= known {
            let down = gossip.held_down.contains(&self.me);
            self.holds_me_down.insert(from, (incarnation, down));
        }
        for (i, app) in self.apps.iter_mut().enumerate() {
            let theirs = &gossip.placements[i];
            if theirs.version > app.placement.version {
                app.placement = theirs.clone();
                out.push(AppAction::Persist);
                out.push(AppAction::Announce);
                out.push(AppAction::Event(AppEvent::Placement {
                    app: app.spec.name.clone(),
                    target: theirs.target,
                    reason: theirs.reason,
                    version: theirs.version,
                    written_here: false,
                }));
            }
            let known = app.reports.get(&from).map(|(inc, _)| *inc).unwrap_or(0);
            if incarnation >= known {
                app.reports
                    .insert(from, (incarnation, gossip.reports[i].clone()));
            }
        }
        out.extend(self.step(now));
        out
    }

    /// The outcome of operation `id`.
    pub fn on_result(&mut self, now: Duration, id: u64, outcome: OpOutcome) -> Vec<AppAction> {
        let mut out = Vec::new();
        for app in &mut self.apps {
            if app.local.running.as_ref().is_some_and(|r| r.id == id) {
                app.local
                    .on_result(&app.spec, &app.placement, now, outcome, &mut out);
                break;
            }
        }
        out.extend(self.step(now));
        out
    }

    /// Advances time: checks due, coordinator decisions.
    pub fn tick(&mut self, now: Duration) -> Vec<AppAction> {
        self.step(now)
    }

    /// The agent shuts down: move the applications that switch on ShutDown, stop
    /// everything here (reason SHUT).
    pub fn shutdown(&mut self, now: Duration) -> Vec<AppAction> {
        let mut out = Vec::new();
        self.leaving = true;
        for i in 0..self.apps.len() {
            let app = &self.apps[i];
            let here = app.placement.target == Some(self.me);
            if here && !app.placement.maintenance && app.spec.switches_on(SwitchTrigger::ShutDown) {
                let to = self.best_node(i, &[self.me]);
                self.write(i, to, PlacementReason::ShutDown, &mut out);
            }
            let app = &mut self.apps[i];
            app.local.stop_all(OfflineReason::Shut);
        }
        out.push(AppAction::Announce);
        out.extend(self.step(now));
        out
    }

    /// This node was declared dead by its peers: stop everything here at once.
    pub fn abandon(&mut self, now: Duration) -> Vec<AppAction> {
        for app in &mut self.apps {
            app.local.stop_all(OfflineReason::Fault);
        }
        let mut out = vec![AppAction::Announce];
        out.extend(self.step(now));
        out
    }

    fn report_of(&self, app: &App) -> AppReport {
        AppReport {
            activity: app.local.activity(),
            seen: app.placement.version,
            fault: app.local.fault.as_ref().map(|f| f.0.clone()),
            maintenance: app.placement.maintenance,
            leaving: self.leaving,
        }
    }

    fn view(&self, node: NodeId) -> Option<&NodeView> {
        self.nodes.iter().find(|v| v.id == node)
    }

    /// Runs every application's local machine and, on the coordinator, the placement
    /// decisions, until nothing more happens at `now`.
    fn step(&mut self, now: Duration) -> Vec<AppAction> {
        let mut out = Vec::new();
        for i in 0..self.apps.len() {
            self.decide(i, &mut out);
        }
        for i in 0..self.apps.len() {
            let guard = self.may_start(i).map_err(|e| self.named(e));
            let me = self.me;
            let app = &mut self.apps[i];
            let before = app.local.activity();
            app.local.drive(
                &app.spec,
                &app.placement,
                me,
                now,
                guard.as_ref().map(|_| ()).map_err(|e| e.as_str()),
                &mut self.next_op,
                &mut out,
            );
            if let Err(why) = guard {
                let wants = app.placement.target == Some(me)
                    && !app.placement.maintenance
                    && matches!(before, Activity::Offline | Activity::Standby)
                    && app.local.fault.is_none();
                if wants && app.waiting.as_deref() != Some(why.as_str()) {
                    out.push(AppAction::Event(AppEvent::Waiting {
                        app: app.spec.name.clone(),
                        why: why.clone(),
                    }));
                    app.waiting = Some(why);
                }
            } else {
                app.waiting = None;
            }
            if app.local.activity() != before {
                out.push(AppAction::Announce);
            }
            let shown = app.local.state(&app.placement);
            if shown != app.shown {
                out.push(AppAction::Event(AppEvent::State {
                    app: app.spec.name.clone(),
                    from: app.shown,
                    to: shown,
                }));
                app.shown = shown;
            }
        }
        out
    }

    /// Status of every application as this node sees it.
    pub fn views(&self) -> Vec<AppView> {
        self.apps
            .iter()
            .map(|a| AppView {
                name: a.spec.name.clone(),
                local: a.local.state(&a.placement),
                per_node: a
                    .spec
                    .nodes
                    .iter()
                    .map(|&n| {
                        if n == self.me {
                            let fault = a.local.fault.as_ref().map(|f| f.0.clone());
                            (n, a.local.state(&a.placement), fault)
                        } else {
                            let heard = self.view(n).is_some_and(|v| v.heard);
                            match a.reports.get(&n) {
                                Some((_, r)) if heard => (n, shown_state(r), r.fault.clone()),
                                _ if self.view(n).is_some_and(|v| v.proved_down) => {
                                    (n, AppState::Offline, None)
                                }
                                _ => (n, AppState::Unknown, None),
                            }
                        }
                    })
                    .collect(),
                placement: a.placement.clone(),
                resources: a
                    .spec
                    .resources
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let running = a
                            .local
                            .running
                            .as_ref()
                            .filter(|op| op.resource == i)
                            .map(|op| op.kind);
                        (r.name.clone(), a.local.res[i], running)
                    })
                    .collect(),
            })
            .collect()
    }

    /// Carries out an operator command given on this node. Returns what was done, or
    /// why it was refused (nothing done).
    pub fn command(
        &mut self,
        now: Duration,
        app: &str,
        command: Command,
    ) -> Result<(String, Vec<AppAction>), String> {
        let i = self
            .app_index(app)
            .ok_or_else(|| format!("there is no application {app:?}"))?;
        let mut out = Vec::new();
        let message = self
            .operator(i, command, &mut out)
            .map_err(|e| self.named(e))?;
        out.extend(self.step(now));
        Ok((self.named(message), out))
    }
}
