//! One application on this node: its resources started in order and stopped in
//! reverse, checks, restarts within the budget, faults.

use std::collections::VecDeque;
use std::time::Duration;

use super::{
    Activity, AppAction, AppEvent, AppSpec, AppState, OfflineReason, OpKind, OpOutcome, Placement,
    ResourceOp, ResourceState,
};
use crate::config::NodeId;

/// What the application does on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Checking every monitored resource once after the agent started; `next` is the
    /// first resource not yet checked.
    Probing {
        next: usize,
    },
    Offline,
    /// Starting resource `next` and up (Standby: only the STANDBYCAPABLE ones).
    Starting {
        next: usize,
        standby: bool,
    },
    Online,
    Standby,
    /// Stopping resources below `next`, down to `until`, then `after`.
    Stopping {
        next: usize,
        until: usize,
        reason: OfflineReason,
        after: After,
    },
    /// Failed; `clean` once every resource was stopped.
    Faulted {
        clean: bool,
    },
    /// Some resources run outside a transition.
    Inconsistent,
}

/// Where a stop sequence leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Offline,
    Faulted,
    /// Start again from `until` (an automatic restart).
    Restart,
}

#[derive(Debug)]
pub(super) struct Local {
    pub(super) phase: Phase,
    pub(super) res: Vec<Option<ResourceState>>,
    pub(super) running: Option<ResourceOp>,
    next_check: Vec<Duration>,
    /// Why it is Faulted here, and the clear generation the fault was recorded under.
    pub(super) fault: Option<(String, u64)>,
    restarts: VecDeque<Duration>,
    recovering: bool,
    warning: bool,
    standby_tried: bool,
    /// Stop everything and start nothing (agent shutdown, or declared dead).
    pub(super) halted: Option<OfflineReason>,
    /// Index of the application, carried in its operations.
    index: usize,
}

impl Local {
    pub(super) fn new(
        spec: &AppSpec,
        index: usize,
        fault: Option<(String, u64)>,
        now: Duration,
    ) -> Self {
        let n = spec.resources.len();
        Local {
            phase: Phase::Probing { next: 0 },
            res: vec![None; n],
            running: None,
            next_check: vec![now; n],
            fault,
            restarts: VecDeque::new(),
            recovering: false,
            warning: false,
            standby_tried: false,
            halted: None,
            index,
        }
    }

    /// What peers are told.
    pub(super) fn activity(&self) -> Activity {
        match self.phase {
            Phase::Probing { .. } => Activity::Probing,
            Phase::Offline => Activity::Offline,
            Phase::Starting { standby: true, .. } | Phase::Standby => Activity::Standby,
            Phase::Starting { .. } => Activity::Starting,
            Phase::Online => Activity::Online,
            Phase::Stopping { .. } => Activity::Stopping,
            Phase::Faulted { clean } => Activity::Faulted { clean },
            Phase::Inconsistent => Activity::Inconsistent,
        }
    }

    /// What status shows for this node. Maintenance mode does not hide it: the
    /// application as a whole is shown in Maintenance, each node with its true state.
    pub(super) fn state(&self, _placement: &Placement) -> AppState {
        match self.phase {
            Phase::Probing { .. } | Phase::Starting { .. } | Phase::Stopping { .. } => {
                AppState::Wait
            }
            Phase::Offline => AppState::Offline,
            Phase::Online if self.warning => AppState::Warning,
            Phase::Online => AppState::Online,
            Phase::Standby => AppState::Standby,
            Phase::Faulted { .. } => AppState::Faulted,
            Phase::Inconsistent => AppState::Inconsistent,
        }
    }

    /// Stop everything here and start nothing any more.
    pub(super) fn stop_all(&mut self, reason: OfflineReason) {
        self.halted = Some(reason);
    }

    /// Takes the next step if no operation runs. `guard` says whether this node may
    /// start the application now (and why not).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn drive(
        &mut self,
        spec: &AppSpec,
        placement: &Placement,
        me: NodeId,
        now: Duration,
        guard: Result<(), &str>,
        next_op: &mut u64,
        out: &mut Vec<AppAction>,
    ) {
        let n = spec.resources.len();
        let mine = placement.target == Some(me) && self.halted.is_none();
        let auto = !placement.maintenance || self.halted.is_some();
        // Each pass either issues an operation, or changes phase and goes round again;
        // a sequence of phases is finite, the bound only guards against a slip.
        for _ in 0..8 {
            if self.running.is_some() {
                return;
            }
            let op = |resource, kind, reason| (resource, kind, reason);
            let next: Option<(usize, OpKind, Option<OfflineReason>)> = match self.phase {
                Phase::Probing { next } => match (next..n).find(|&i| spec.resources[i].monitored) {
                    Some(i) => {
                        self.phase = Phase::Probing { next: i + 1 };
                        Some(op(i, OpKind::Check, None))
                    }
                    None => {
                        self.conclude_probe(spec, spec.nodes.contains(&me));
                        continue;
                    }
                },
                Phase::Offline | Phase::Standby => {
                    if let Some(reason) = self.halted {
                        if self.phase == Phase::Standby {
                            self.stop_from(n, reason, After::Offline);
                            continue;
                        }
                        return;
                    }
                    if auto && mine && self.fault.is_none() {
                        if guard.is_ok() {
                            self.restarts.clear();
                            self.phase = Phase::Starting {
                                next: 0,
                                standby: false,
                            };
                            continue;
                        }
                    } else if auto
                        && self.phase == Phase::Offline
                        && !self.standby_tried
                        && self.fault.is_none()
                        && placement.target.is_some_and(|t| t != me)
                        && self.wants_standby(spec, placement)
                    {
                        self.standby_tried = true;
                        self.phase = Phase::Starting {
                            next: 0,
                            standby: true,
                        };
                        continue;
                    }
                    self.due_check(spec, now)
                }
                Phase::Starting { next, standby } => {
                    if self.halted.is_some() || (auto && !standby && !mine) {
                        let reason = self.halted.unwrap_or(switch_or_stop(placement));
                        self.stop_from(n, reason, After::Offline);
                        continue;
                    }
                    if standby && mine && auto && guard.is_ok() {
                        self.phase = Phase::Starting {
                            next: 0,
                            standby: false,
                        };
                        continue;
                    }
                    let found = (next..n).find(|&i| !standby || spec.resources[i].standby_capable);
                    match found {
                        Some(i) => {
                            self.phase = Phase::Starting {
                                next: i + 1,
                                standby,
                            };
                            let kind = if standby {
                                OpKind::StartStandby
                            } else {
                                OpKind::Start
                            };
                            Some(op(i, kind, None))
                        }
                        None => {
                            self.phase = if standby {
                                Phase::Standby
                            } else {
                                Phase::Online
                            };
                            self.recovering = false;
                            self.warning = false;
                            for (i, r) in spec.resources.iter().enumerate() {
                                self.next_check[i] = now + r.check_interval;
                            }
                            continue;
                        }
                    }
                }
                Phase::Online | Phase::Inconsistent => {
                    if let Some(reason) = self.halted {
                        self.stop_from(n, reason, After::Offline);
                        continue;
                    }
                    if auto && !mine {
                        self.stop_from(n, switch_or_stop(placement), After::Offline);
                        continue;
                    }
                    if auto && self.phase == Phase::Inconsistent && guard.is_ok() {
                        self.phase = Phase::Starting {
                            next: 0,
                            standby: false,
                        };
                        continue;
                    }
                    self.due_check(spec, now)
                }
                Phase::Stopping {
                    next,
                    until,
                    reason,
                    after,
                } => {
                    if next > until {
                        self.phase = Phase::Stopping {
                            next: next - 1,
                            until,
                            reason,
                            after,
                        };
                        Some(op(next - 1, OpKind::Stop, Some(reason)))
                    } else {
                        self.phase = match after {
                            After::Offline => Phase::Offline,
                            After::Faulted => Phase::Faulted { clean: true },
                            After::Restart => Phase::Starting {
                                next: until,
                                standby: false,
                            },
                        };
                        if after == After::Offline && reason == OfflineReason::Switch {
                            // Having switched away, a node may go to Standby again.
                            self.standby_tried = false;
                        }
                        continue;
                    }
                }
                Phase::Faulted { .. } => {
                    if let Some((_, generation)) = &mut self.fault {
                        // Recorded under a clear generation the placement no longer
                        // carries (a concurrent placement won over the one it was
                        // recorded under): recorded anew, so that the next clear clears it.
                        if *generation > placement.clear {
                            *generation = placement.clear;
                            out.push(AppAction::Persist);
                        }
                    }
                    let cleared = self
                        .fault
                        .as_ref()
                        .is_none_or(|(_, generation)| placement.clear > *generation);
                    if cleared {
                        self.fault = None;
                        out.push(AppAction::Persist);
                        self.stop_from(n, OfflineReason::Stop, After::Offline);
                        continue;
                    }
                    None
                }
            };
            if let Some((resource, kind, reason)) = next {
                let op = ResourceOp {
                    id: *next_op,
                    app: self.index,
                    resource,
                    kind,
                    reason,
                    auto_recover: self.recovering,
                };
                *next_op += 1;
                self.running = Some(op.clone());
                out.push(AppAction::Run(op));
            }
            return;
        }
    }

    /// Handles the outcome of the running operation.
    pub(super) fn on_result(
        &mut self,
        spec: &AppSpec,
        placement: &Placement,
        now: Duration,
        outcome: OpOutcome,
        out: &mut Vec<AppAction>,
    ) {
        let Some(op) = self.running.take() else {
            return;
        };
        let i = op.resource;
        let Some(res) = spec.resources.get(i) else {
            return;
        };
        let n = spec.resources.len();
        let failure = |outcome: &OpOutcome| match outcome {
            OpOutcome::Done(_) => None,
            OpOutcome::Failed { code, detail } => Some(match code {
                Some(c) => format!("exit {c}: {detail}"),
                None => detail.clone(),
            }),
            OpOutcome::TimedOut => Some("timed out".to_string()),
        };
        match op.kind {
            OpKind::Check => {
                let state = match &outcome {
                    OpOutcome::Done(s) => *s,
                    _ => ResourceState::Faulted,
                };
                let before = self.res[i].replace(state);
                self.next_check[i] = now + res.check_interval;
                let detail = failure(&outcome).unwrap_or_else(|| format!("check: {state:?}"));
                match self.phase {
                    Phase::Online => {
                        // A warning lasts while any resource reports one.
                        self.warning = self.res.contains(&Some(ResourceState::OnlineWarning));
                        if state.is_online() || state == ResourceState::Unknown {
                            return;
                        }
                        if placement.maintenance {
                            // Reported when it changes, not at every check.
                            if before != Some(state) {
                                out.push(fault_event(spec, i, &detail, "none (maintenance mode)"));
                            }
                            return;
                        }
                        self.resource_failed(spec, placement, i, now, &detail, out);
                    }
                    Phase::Standby if state.is_fault() && !placement.maintenance => {
                        self.fault = Some((format!("{}: {detail}", res.name), placement.clear));
                        out.push(fault_event(spec, i, &detail, "stop, stay Faulted here"));
                        out.push(AppAction::Persist);
                        self.stop_from(n, OfflineReason::Fault, After::Faulted);
                    }
                    Phase::Offline if state.is_online() && !placement.maintenance => {
                        out.push(fault_event(
                            spec,
                            i,
                            "found Online on a node it does not run on",
                            "Inconsistent",
                        ));
                        self.phase = Phase::Inconsistent;
                    }
                    _ => {}
                }
            }
            OpKind::Start | OpKind::StartStandby => match failure(&outcome) {
                None => {
                    self.res[i] = Some(match op.kind {
                        OpKind::StartStandby => ResourceState::Standby,
                        _ => ResourceState::Online,
                    });
                }
                Some(detail) => {
                    self.res[i] = Some(ResourceState::Faulted);
                    out.push(op_failed(spec, i, op.kind, &detail));
                    self.fault = Some((
                        format!("start of {} failed: {detail}", res.name),
                        placement.clear,
                    ));
                    self.recovering = false;
                    out.push(AppAction::Persist);
                    self.stop_from(n, OfflineReason::Fault, After::Faulted);
                }
            },
            OpKind::Stop => match failure(&outcome) {
                None => self.res[i] = Some(ResourceState::Offline),
                Some(detail) => {
                    self.res[i] = Some(ResourceState::Faulted);
                    out.push(op_failed(spec, i, op.kind, &detail));
                    self.fault = Some((
                        format!("stop of {} failed: {detail}", res.name),
                        placement.clear,
                    ));
                    self.recovering = false;
                    out.push(AppAction::Persist);
                    self.phase = Phase::Faulted { clean: false };
                }
            },
        }
    }

    fn resource_failed(
        &mut self,
        spec: &AppSpec,
        placement: &Placement,
        i: usize,
        now: Duration,
        detail: &str,
        out: &mut Vec<AppAction>,
    ) {
        let n = spec.resources.len();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= spec.restart_window)
        {
            self.restarts.pop_front();
        }
        let allowed = spec
            .restart_limit
            .max(u32::from(spec.resources[i].auto_recover)) as usize;
        if self.restarts.len() < allowed {
            self.restarts.push_back(now);
            let action = format!("restart {} of {allowed}", self.restarts.len());
            out.push(fault_event(spec, i, detail, &action));
            self.recovering = true;
            self.stop_from(n, OfflineReason::Fault, After::Restart);
            if let Phase::Stopping { next, reason, .. } = self.phase {
                self.phase = Phase::Stopping {
                    next,
                    until: i,
                    reason,
                    after: After::Restart,
                };
            }
            return;
        }
        let action = if spec.switches_on(crate::config::guest::SwitchTrigger::ResourceFailure) {
            "stop, then switch to another node"
        } else {
            "stop, stay Faulted (AutoSwitchOver has no ResourceFailure)"
        };
        out.push(fault_event(spec, i, detail, action));
        self.fault = Some((
            format!("{}: {detail}", spec.resources[i].name),
            placement.clear,
        ));
        out.push(AppAction::Persist);
        self.stop_from(n, OfflineReason::Fault, After::Faulted);
    }

    fn stop_from(&mut self, n: usize, reason: OfflineReason, after: After) {
        self.phase = Phase::Stopping {
            next: n,
            until: 0,
            reason,
            after,
        };
    }

    /// `member`: this node is one of the application's nodes (elsewhere it never runs
    /// it, and what runs there does not count).
    fn conclude_probe(&mut self, spec: &AppSpec, member: bool) {
        let monitored: Vec<usize> = (0..spec.resources.len())
            .filter(|&i| spec.resources[i].monitored)
            .collect();
        let online = monitored
            .iter()
            .filter(|&&i| self.res[i].is_some_and(|s| s.is_online()))
            .count();
        // A check that failed, timed out or could not tell leaves its resource possibly
        // running: never report that as stopped, or another node may start it.
        let unsure = member
            && monitored.iter().any(|&i| {
                self.res[i]
                    .is_some_and(|s| matches!(s, ResourceState::Faulted | ResourceState::Unknown))
            });
        self.phase = if self.fault.is_some() {
            Phase::Faulted {
                clean: online == 0 && !unsure,
            }
        } else if online == 0 && !unsure {
            Phase::Offline
        } else if online == monitored.len() {
            Phase::Online
        } else {
            Phase::Inconsistent
        };
    }

    fn wants_standby(&self, spec: &AppSpec, placement: &Placement) -> bool {
        use crate::config::guest::StandbyTransition;
        let capable = spec.resources.iter().any(|r| r.standby_capable);
        let startup = spec
            .standby_transitions
            .contains(&StandbyTransition::Startup)
            && placement.reason == super::PlacementReason::Startup;
        let switched = spec
            .standby_transitions
            .contains(&StandbyTransition::SwitchRequest)
            && placement.reason != super::PlacementReason::Startup;
        capable && (startup || switched)
    }

    fn due_check(
        &mut self,
        spec: &AppSpec,
        now: Duration,
    ) -> Option<(usize, OpKind, Option<OfflineReason>)> {
        let i = (0..spec.resources.len())
            .filter(|&i| spec.resources[i].monitored && self.next_check[i] <= now)
            .min_by_key(|&i| self.next_check[i])?;
        Some((i, OpKind::Check, None))
    }
}

fn switch_or_stop(placement: &Placement) -> OfflineReason {
    if placement.target.is_some() {
        OfflineReason::Switch
    } else {
        OfflineReason::Stop
    }
}

fn fault_event(spec: &AppSpec, i: usize, detail: &str, action: &str) -> AppAction {
    AppAction::Event(AppEvent::ResourceFault {
        app: spec.name.clone(),
        resource: spec.resources[i].name.clone(),
        detail: detail.to_string(),
        action: action.to_string(),
    })
}

fn op_failed(spec: &AppSpec, i: usize, kind: OpKind, detail: &str) -> AppAction {
    AppAction::Event(AppEvent::OpFailed {
        app: spec.name.clone(),
        resource: spec.resources[i].name.clone(),
        op: kind,
        detail: detail.to_string(),
    })
}
