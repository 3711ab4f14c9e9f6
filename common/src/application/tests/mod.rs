//! The engine on virtual time: several nodes with perfect, instant membership, gossip
//! between connected nodes every round, and fake resources that can be made to fail.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::*;
use crate::admin::GuestNodeState;
use crate::config::guest::StandbyTransition;

mod faults;
mod membership;
mod switching;

const ROUND: Duration = Duration::from_millis(100);

fn spec(name: &str, nodes: &[NodeId], resources: usize) -> AppSpec {
    AppSpec::for_tests(name, nodes, resources)
}

/// Node index `i` has id `i + 1`.
struct Sim {
    now: Duration,
    specs: Vec<AppSpec>,
    engines: Vec<Option<Engine>>,
    incarnations: Vec<u64>,
    persisted: Vec<Persistent>,
    /// running[node][app][resource]
    running: Vec<Vec<Vec<bool>>>,
    pending: Vec<(usize, ResourceOp)>,
    connected: Vec<Vec<bool>>,
    proved: Vec<Option<u64>>,
    fail_stop: BTreeSet<(usize, usize, usize)>,
    fail_start: BTreeSet<(usize, usize, usize)>,
    check_says: HashMap<(usize, usize, usize), ResourceState>,
    /// (node, app, resource, kind)
    ops: Vec<(usize, usize, usize, OpKind, Option<OfflineReason>)>,
    events: Vec<(usize, AppEvent)>,
    kills: Vec<(usize, NodeId)>,
    /// Nodes heard again with a new incarnation but not yet joined (shown DOWN).
    rejoining: BTreeSet<usize>,
}

impl Sim {
    fn new(n: usize, specs: Vec<AppSpec>) -> Sim {
        let resources: Vec<Vec<bool>> = specs
            .iter()
            .map(|s| vec![false; s.resources.len()])
            .collect();
        let mut sim = Sim {
            now: Duration::ZERO,
            engines: (0..n).map(|_| None).collect(),
            incarnations: vec![0; n],
            persisted: vec![Persistent::default(); n],
            running: vec![resources; n],
            pending: Vec::new(),
            connected: vec![vec![true; n]; n],
            proved: vec![None; n],
            fail_stop: BTreeSet::new(),
            fail_start: BTreeSet::new(),
            check_says: HashMap::new(),
            ops: Vec::new(),
            events: Vec::new(),
            kills: Vec::new(),
            rejoining: BTreeSet::new(),
            specs,
        };
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    fn n(&self) -> usize {
        self.engines.len()
    }

    fn boot(&mut self, i: usize) {
        self.incarnations[i] += 1;
        self.proved[i] = None;
        self.engines[i] = Some(Engine::new(
            i as NodeId + 1,
            self.specs.clone(),
            &self.persisted[i],
            self.now,
        ));
    }

    /// The node dies with everything it ran.
    fn crash(&mut self, i: usize) {
        self.engines[i] = None;
        self.pending.retain(|(n, _)| *n != i);
        for app in &mut self.running[i] {
            app.iter_mut().for_each(|r| *r = false);
        }
    }

    fn views(&self, i: usize) -> Vec<NodeView> {
        (0..self.n())
            .filter(|&j| j != i)
            .map(|j| {
                let heard =
                    self.engines[j].is_some() && self.connected[i][j] && self.connected[j][i];
                let proved = !heard && self.proved[j].is_some();
                NodeView {
                    id: j as NodeId + 1,
                    state: if heard && self.rejoining.contains(&j) {
                        GuestNodeState::Down
                    } else if heard {
                        GuestNodeState::Up
                    } else if proved {
                        GuestNodeState::Down
                    } else {
                        GuestNodeState::LeftCluster
                    },
                    heard,
                    proved_down: proved,
                    incarnation: self.incarnations[j],
                }
            })
            .collect()
    }

    fn actions(&mut self, i: usize, actions: Vec<AppAction>) {
        for a in actions {
            match a {
                AppAction::Run(op) => self.pending.push((i, op)),
                AppAction::Event(e) => self.events.push((i, e)),
                AppAction::Persist => {
                    if let Some(e) = &self.engines[i] {
                        self.persisted[i] = e.persistent();
                    }
                }
                AppAction::Announce => {}
                AppAction::KillNode(n) => self.kills.push((i, n)),
            }
        }
    }

    fn outcome(&mut self, i: usize, op: &ResourceOp) -> OpOutcome {
        let key = (i, op.app, op.resource);
        let r = &mut self.running[i][op.app][op.resource];
        match op.kind {
            OpKind::Start if self.fail_start.contains(&key) => OpOutcome::Failed {
                code: Some(1),
                detail: "start failed".into(),
            },
            OpKind::Start => {
                *r = true;
                OpOutcome::Done(ResourceState::Online)
            }
            OpKind::StartStandby => OpOutcome::Done(ResourceState::Standby),
            OpKind::Stop if self.fail_stop.contains(&key) => OpOutcome::Failed {
                code: Some(1),
                detail: "stop failed".into(),
            },
            OpKind::Stop => {
                *r = false;
                OpOutcome::Done(ResourceState::Offline)
            }
            OpKind::Check => OpOutcome::Done(self.check_says.get(&key).copied().unwrap_or(if *r {
                ResourceState::Online
            } else {
                ResourceState::Offline
            })),
        }
    }

    fn round(&mut self) {
        self.now += ROUND;
        let n = self.n();
        for i in 0..n {
            let views = self.views(i);
            if let Some(e) = self.engines[i].as_mut() {
                let mut a = e.set_nodes(self.now, views);
                a.extend(e.tick(self.now));
                self.actions(i, a);
            }
        }
        for i in 0..n {
            let Some(g) = self.engines[i].as_ref().map(|e| e.gossip()) else {
                continue;
            };
            for j in 0..n {
                if j != i && self.connected[i][j] {
                    if let Some(e) = self.engines[j].as_mut() {
                        let a = e.on_gossip(self.now, i as NodeId + 1, self.incarnations[i], &g);
                        self.actions(j, a);
                    }
                }
            }
        }
        for (i, op) in std::mem::take(&mut self.pending) {
            if self.engines[i].is_none() {
                continue;
            }
            let outcome = self.outcome(i, &op);
            self.ops.push((i, op.app, op.resource, op.kind, op.reason));
            let a = self.engines[i]
                .as_mut()
                .map(|e| e.on_result(self.now, op.id, outcome))
                .unwrap_or_default();
            self.actions(i, a);
        }
        self.check_invariant();
    }

    fn check_invariant(&self) {
        for app in 0..self.specs.len() {
            let holders: Vec<usize> = (0..self.n())
                .filter(|&i| self.running[i][app].iter().any(|&r| r))
                .collect();
            assert!(
                holders.len() <= 1,
                "app {app} runs on nodes {holders:?} at {:?}",
                self.now
            );
        }
    }

    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.round();
        }
    }

    fn state(&self, i: usize, app: usize) -> AppState {
        self.engines[i]
            .as_ref()
            .map(|e| e.views()[app].local)
            .unwrap_or(AppState::Unknown)
    }

    fn online_on(&self, app: usize) -> Vec<usize> {
        (0..self.n())
            .filter(|&i| self.state(i, app) == AppState::Online)
            .collect()
    }

    fn command(&mut self, i: usize, app: &str, c: Command) -> Result<String, String> {
        let now = self.now;
        let (msg, a) = self.engines[i].as_mut().unwrap().command(now, app, c)?;
        self.actions(i, a);
        Ok(msg)
    }

    fn ops_of(&self, node: usize, kind: OpKind) -> Vec<usize> {
        self.ops
            .iter()
            .filter(|o| o.0 == node && o.3 == kind)
            .map(|o| o.2)
            .collect()
    }
}
