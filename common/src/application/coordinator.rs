//! Placement: who coordinates, what the coordinator decides, the start guard, and the
//! operator's commands.

use super::{Activity, AppAction, AppEvent, Command, Engine, Placement, PlacementReason, Version};
use crate::admin::GuestNodeState;
use crate::config::guest::SwitchTrigger;
use crate::config::NodeId;

impl Engine {
    /// The coordinator is the UP node with the lowest id, this one included.
    pub fn coordinator(&self) -> NodeId {
        self.nodes
            .iter()
            .filter(|v| v.state == GuestNodeState::Up)
            .map(|v| v.id)
            .chain(std::iter::once(self.me))
            .min()
            .unwrap_or(self.me)
    }

    pub(super) fn is_coordinator(&self) -> bool {
        self.coordinator() == self.me
    }

    /// The coordinator when `node` does not count (it is the one to be judged).
    fn coordinator_without(&self, node: NodeId) -> NodeId {
        self.nodes
            .iter()
            .filter(|v| v.state == GuestNodeState::Up && v.id != node)
            .map(|v| v.id)
            .chain(std::iter::once(self.me))
            .min()
            .unwrap_or(self.me)
    }

    /// What `node` reports about application `i` (this node answers for itself).
    pub(super) fn activity_on(&self, i: usize, node: NodeId) -> Option<Activity> {
        if node == self.me {
            return Some(self.apps[i].local.activity());
        }
        let heard = self.view(node).is_some_and(|v| v.heard);
        let view_incarnation = self.view(node).map(|v| v.incarnation).unwrap_or(0);
        self.apps[i]
            .reports
            .get(&node)
            .filter(|(inc, _)| heard && *inc >= view_incarnation)
            .map(|(_, r)| r.activity)
    }

    fn faulted_on(&self, i: usize, node: NodeId) -> bool {
        if node == self.me {
            return self.apps[i].local.fault.is_some();
        }
        matches!(self.activity_on(i, node), Some(Activity::Faulted { .. }))
            || self.apps[i]
                .reports
                .get(&node)
                .is_some_and(|(_, r)| r.fault.is_some())
    }

    fn leaving(&self, i: usize, node: NodeId) -> bool {
        if node == self.me {
            return self.leaving;
        }
        self.apps[i]
            .reports
            .get(&node)
            .is_some_and(|(_, r)| r.leaving)
    }

    fn is_up(&self, node: NodeId) -> bool {
        node == self.me
            || self
                .view(node)
                .is_some_and(|v| v.state == GuestNodeState::Up)
    }

    /// Whether this node may start application `i` now: every other node of it has
    /// applied the current placement and reports it inactive, or is proved dead.
    pub(super) fn may_start(&self, i: usize) -> Result<(), String> {
        let app = &self.apps[i];
        for &n in &app.spec.nodes {
            if n == self.me {
                continue;
            }
            let Some(v) = self.view(n) else {
                return Err(format!("node {n} not known yet"));
            };
            if v.proved_down {
                continue;
            }
            if !v.heard {
                return Err(format!("node {n} is {}", v.state));
            }
            let holds_me_down = self
                .holds_me_down
                .get(&n)
                .is_some_and(|(inc, down)| *down && *inc >= v.incarnation);
            if holds_me_down {
                return Err(format!(
                    "node {n} still holds this node DOWN (it has not heard it since it restarted)"
                ));
            }
            let report = app
                .reports
                .get(&n)
                .filter(|(inc, _)| *inc >= v.incarnation)
                .map(|(_, r)| r);
            let Some(r) = report else {
                return Err(format!("no report from node {n} yet"));
            };
            if r.seen < app.placement.version {
                return Err(format!("node {n} has not applied the placement yet"));
            }
            if !r.activity.inactive() {
                return Err(format!("it is {} on node {n}", r.activity));
            }
        }
        Ok(())
    }

    /// The best node for application `i` outside `excluding`: OnlinePriority's last
    /// node first, then the priority order; only UP nodes where it is not Faulted and
    /// whose agent is not leaving.
    pub(super) fn best_node(&self, i: usize, excluding: &[NodeId]) -> Option<NodeId> {
        let app = &self.apps[i];
        let preferred = app
            .placement
            .last_online
            .filter(|_| app.spec.online_priority);
        preferred
            .into_iter()
            .chain(app.spec.nodes.iter().copied())
            .filter(|n| app.spec.nodes.contains(n))
            .find(|&n| {
                !excluding.contains(&n)
                    && self.is_up(n)
                    && !self.faulted_on(i, n)
                    && !self.leaving(i, n)
            })
    }

    /// Writes a new placement for application `i`.
    pub(super) fn write(
        &mut self,
        i: usize,
        target: Option<NodeId>,
        reason: PlacementReason,
        out: &mut Vec<AppAction>,
    ) {
        let online = self.apps[i]
            .spec
            .nodes
            .clone()
            .into_iter()
            .find(|&n| self.activity_on(i, n) == Some(Activity::Online));
        let me = self.me;
        let app = &mut self.apps[i];
        let p = &app.placement;
        let placement = Placement {
            version: Version {
                epoch: p.version.epoch + 1,
                issuer: me,
            },
            target,
            maintenance: p.maintenance,
            clear: p.clear,
            reason,
            last_online: online.or(p.last_online),
        };
        Self::adopt(app, placement, out);
    }

    fn adopt(app: &mut super::App, placement: Placement, out: &mut Vec<AppAction>) {
        out.push(AppAction::Event(AppEvent::Placement {
            app: app.spec.name.clone(),
            target: placement.target,
            reason: placement.reason,
            version: placement.version,
            written_here: true,
        }));
        app.placement = placement;
        out.push(AppAction::Persist);
        out.push(AppAction::Announce);
    }

    /// Why the coordinator holds application `i` back, reported once when it changes.
    fn hold(&mut self, i: usize, why: Option<String>, out: &mut Vec<AppAction>) {
        if why != self.apps[i].held {
            if let Some(why) = &why {
                out.push(AppAction::Event(AppEvent::Waiting {
                    app: self.apps[i].spec.name.clone(),
                    why: why.clone(),
                }));
            }
            self.apps[i].held = why;
        }
    }

    /// The coordinator's automatic decisions for application `i`.
    pub(super) fn decide(&mut self, i: usize, out: &mut Vec<AppAction>) {
        let app = &self.apps[i];
        if self.leaving || app.placement.maintenance {
            return;
        }
        // HaltFlag: a node whose stop failed cannot judge itself; the coordinator
        // among the others asks for it to be killed. Any node of it, not only the
        // target: a stop that fails during a switch leaves it stuck where it was.
        let others: Vec<NodeId> = app
            .spec
            .nodes
            .iter()
            .copied()
            .filter(|&t| t != self.me)
            .collect();
        for t in others {
            let stuck = self.activity_on(i, t) == Some(Activity::Faulted { clean: false });
            let requested = self.apps[i].kill_requested == Some(t);
            if !stuck && self.view(t).is_some_and(|v| v.heard) && requested {
                // It came back (killed and restarted, or cleaned up): a new fault asks anew.
                self.apps[i].kill_requested = None;
            }
            let app = &self.apps[i];
            if stuck
                && app.spec.halt_flag
                && app.kill_requested != Some(t)
                && self.coordinator_without(t) == self.me
            {
                let name = app.spec.name.clone();
                self.apps[i].kill_requested = Some(t);
                out.push(AppAction::Event(AppEvent::KillRequested {
                    app: name,
                    node: t,
                }));
                out.push(AppAction::KillNode(t));
            }
        }
        if !self.is_coordinator() {
            return;
        }
        let app = &self.apps[i];
        let spec = &app.spec;
        if app.placement.version == Version::default() {
            if !spec.auto_start_up {
                return;
            }
            // Start-up waits until every node of it is known: UP and reporting, or
            // proved dead.
            let mut running_on = None;
            let mut unknown = None;
            let mut probing_here = false;
            for &n in &spec.nodes {
                let proved = self.view(n).is_some_and(|v| v.proved_down);
                match self.activity_on(i, n) {
                    _ if proved => {}
                    // This node's own first checks take a moment; not worth a report.
                    None | Some(Activity::Probing) if n == self.me => probing_here = true,
                    None | Some(Activity::Probing) => {
                        unknown.get_or_insert(n);
                    }
                    Some(a) if !a.inactive() => running_on = Some(n),
                    Some(_) => {}
                }
                if !proved && n != self.me && !self.is_up(n) {
                    unknown.get_or_insert(n);
                }
            }
            let why = unknown.map(|n| {
                self.named(format!(
                    "start-up waits until every node of it is known: node {n} is not UP and \
                     reporting yet (if it is off, hvctl node down node {n})"
                ))
            });
            self.hold(i, why, out);
            if unknown.is_some() || probing_here {
                return;
            }
            let target = running_on.or_else(|| self.best_node(i, &[]));
            if target.is_some() {
                self.write(i, target, PlacementReason::Startup, out);
            }
            return;
        }
        let Some(t) = app.placement.target else {
            return;
        };
        // DOWN is proof too: a node back with a new incarnation no longer runs what
        // its old one ran (the start guard still waits for its report).
        let proved_down = t != self.me
            && self
                .view(t)
                .is_some_and(|v| v.proved_down || v.state == GuestNodeState::Down);
        let left = t != self.me
            && !proved_down
            && self
                .view(t)
                .is_some_and(|v| v.state == GuestNodeState::LeftCluster);
        let app = &self.apps[i];
        let spec = &app.spec;
        let failed_clean = self.activity_on(i, t) == Some(Activity::Faulted { clean: true });
        let wants_switch = failed_clean && spec.switches_on(SwitchTrigger::ResourceFailure);
        let held = left
            .then(|| {
                self.named(format!(
                    "it ran on node {t}, which is LEFTCLUSTER: it stays there until node {t} is \
                     proved down (make sure it is off, then hvctl node down node {t})"
                ))
            })
            .or_else(|| {
                // A proved death still switches: what ran there does not any more.
                let switch_held = self.switch_hold.as_ref().filter(|_| !proved_down);
                switch_held
                    .filter(|_| wants_switch)
                    .map(|why| format!("its switch is held: {why}"))
            });
        let hold_switch = held.is_some();
        self.hold(i, held, out);
        let app = &self.apps[i];
        let spec = &app.spec;
        if proved_down {
            let halted = app.kill_requested == Some(t);
            if spec.switches_on(SwitchTrigger::HostFailure) || halted {
                if let Some(to) = self.best_node(i, &[t]) {
                    self.write(i, Some(to), PlacementReason::HostFailure, out);
                }
            }
            return;
        }
        if wants_switch && !hold_switch {
            if let Some(to) = self.best_node(i, &[t]) {
                self.write(i, Some(to), PlacementReason::ResourceFailure, out);
            }
        }
    }

    /// An operator's command for application `i`.
    pub(super) fn operator(
        &mut self,
        i: usize,
        command: Command,
        out: &mut Vec<AppAction>,
    ) -> Result<String, String> {
        let name = self.apps[i].spec.name.clone();
        let maintenance = self.apps[i].placement.maintenance;
        // Where it runs now, and whether that node is uncertain.
        let nodes = self.apps[i].spec.nodes.clone();
        let running: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|&n| self.activity_on(i, n).is_some_and(|a| !a.inactive()))
            .collect();
        let uncertain: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|&n| {
                n != self.me
                    && self.view(n).is_some_and(|v| {
                        matches!(v.state, GuestNodeState::LeftCluster) && !v.proved_down
                    })
            })
            .collect();
        match command {
            Command::Maintenance(on) => {
                if maintenance == on {
                    return Err(format!(
                        "{name} is already {} maintenance mode",
                        if on { "in" } else { "out of" }
                    ));
                }
                let target = self.apps[i].placement.target;
                self.write(i, target, PlacementReason::Maintenance, out);
                self.apps[i].placement.maintenance = on;
                Ok(format!(
                    "{name}: maintenance mode {}",
                    if on {
                        "on: no automatic action; checks go on reporting"
                    } else {
                        "off: automatic actions resume"
                    }
                ))
            }
            _ if maintenance => Err(format!(
                "{name} is in maintenance mode: switch it off first (hvctl app maintenance {name} off)"
            )),
            Command::Clear => {
                let faulted: Vec<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|&n| self.faulted_on(i, n))
                    .collect();
                if faulted.is_empty() {
                    return Err(format!("{name} is not Faulted on any node"));
                }
                let target = self.apps[i]
                    .placement
                    .target
                    .filter(|t| !faulted.contains(t));
                self.write(i, target, PlacementReason::Clear, out);
                self.apps[i].placement.clear += 1;
                let on: Vec<String> = faulted.iter().map(|n| format!("node {n}")).collect();
                Ok(format!(
                    "{name}: faults cleared on {}; they run its stop and become Offline",
                    on.join(", ")
                ))
            }
            Command::Offline => {
                if self.apps[i].placement.target.is_none() && running.is_empty() {
                    return Err(format!("{name} is already Offline everywhere"));
                }
                self.write(i, None, PlacementReason::Offline, out);
                Ok(format!("{name}: going Offline everywhere"))
            }
            Command::Switch(_) if self.switch_hold.is_some() => Err(format!(
                "switchovers are held: {}; try again once it is over",
                self.switch_hold.as_deref().unwrap_or_default()
            )),
            Command::Online | Command::Switch(_) => {
                if let Some(&n) = uncertain.first() {
                    if self.apps[i].placement.target == Some(n)
                        || matches!(command, Command::Online)
                    {
                        return Err(format!(
                            "node {n} is LEFTCLUSTER and {name} may still run there: make sure \
                             it is off, then hvctl node down node {n}"
                        ));
                    }
                }
                let current = self.apps[i].placement.target;
                let to = match command {
                    Command::Switch(Some(n)) => {
                        if !nodes.contains(&n) {
                            return Err(format!("{name} cannot run on node {n} (not in its nodes)"));
                        }
                        if !self.is_up(n) {
                            return Err(format!("node {n} is not UP"));
                        }
                        if self.faulted_on(i, n) {
                            return Err(format!(
                                "{name} is Faulted on node {n}: clear it first (hvctl app clear {name})"
                            ));
                        }
                        n
                    }
                    Command::Switch(None) => {
                        let exclude: Vec<NodeId> = current.into_iter().collect();
                        self.best_node(i, &exclude)
                            .ok_or_else(|| format!("no other node can take {name}"))?
                    }
                    _ => {
                        if current.is_some() && !running.is_empty() {
                            return Err(format!("{name} is already placed and running"));
                        }
                        self.best_node(i, &[])
                            .ok_or_else(|| format!("no node can take {name}"))?
                    }
                };
                if current == Some(to) && running == vec![to] {
                    return Err(format!("{name} already runs on node {to}"));
                }
                self.write(i, Some(to), PlacementReason::Operator, out);
                Ok(format!("{name}: placed on node {to}"))
            }
        }
    }
}
