//! The engine on virtual time: several nodes with perfect, instant membership, gossip
//! between connected nodes every round, and fake resources that can be made to fail.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::*;
use crate::admin::GuestNodeState;
use crate::config::guest::StandbyTransition;

const ROUND: Duration = Duration::from_millis(100);

fn spec(name: &str, nodes: &[NodeId], resources: usize) -> AppSpec {
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

#[test]
fn starts_on_the_first_priority_node_only() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 3)]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    assert_eq!(sim.state(1, 0), AppState::Offline);
    assert_eq!(
        sim.ops_of(0, OpKind::Start),
        vec![0, 1, 2],
        "started in order"
    );
    assert!(sim.ops_of(1, OpKind::Start).is_empty());
}

#[test]
fn priority_order_is_respected() {
    let mut sim = Sim::new(3, vec![spec("app1", &[3, 1, 2], 1)]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![2]);
}

#[test]
fn operator_switch_stops_in_reverse_then_starts_elsewhere() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 3)]);
    sim.run(20);
    sim.ops.clear();
    sim.command(1, "app1", Command::Switch(None)).unwrap();
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![1]);
    assert_eq!(
        sim.ops_of(0, OpKind::Stop),
        vec![2, 1, 0],
        "stopped in reverse"
    );
    assert!(sim
        .ops
        .iter()
        .filter(|o| o.3 == OpKind::Stop)
        .all(|o| o.4 == Some(OfflineReason::Switch)));
    assert_eq!(sim.ops_of(1, OpKind::Start), vec![0, 1, 2]);
}

#[test]
fn resource_failure_uses_the_restart_budget_then_switches_and_clear_clears() {
    let mut s = spec("app1", &[1, 2], 2);
    s.restart_limit = 1;
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    // First failure: restarted in place, from the failed resource up.
    sim.running[0][0][0] = false;
    sim.ops.clear();
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0], "restarted on the same node");
    assert_eq!(sim.ops_of(0, OpKind::Stop), vec![1, 0]);
    assert_eq!(sim.ops_of(0, OpKind::Start), vec![0, 1]);
    // Second failure inside the window: budget used, switch.
    sim.running[0][0][1] = false;
    sim.run(30);
    assert_eq!(sim.online_on(0), vec![1], "switched to the other node");
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    assert!(sim.command(0, "app1", Command::Clear).is_ok());
    sim.run(10);
    assert_eq!(sim.state(0, 0), AppState::Offline);
    assert_eq!(sim.state(1, 0), AppState::Online, "clear does not move it");
}

#[test]
fn held_switchovers_wait_for_the_release_and_transitions_are_told() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 2)]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    for e in sim.engines.iter_mut().flatten() {
        assert_eq!(e.transition(), None, "settled");
        e.set_switch_hold(Some("node 1 is being migrated".into()));
    }
    let refused = sim
        .command(1, "app1", Command::Switch(Some(2)))
        .unwrap_err();
    assert!(refused.contains("switchovers are held"), "{refused}");
    // A resource failure without a restart budget would switch: it waits.
    sim.running[0][0][1] = false;
    sim.run(30);
    assert!(sim.online_on(0).is_empty() || sim.online_on(0) == vec![0]);
    assert_ne!(sim.online_on(0), vec![1], "not switched while held");
    assert!(sim.events.iter().any(|(_, e)| matches!(
        e,
        AppEvent::Waiting { why, .. } if why.contains("its switch is held")
    )));
    for e in sim.engines.iter_mut().flatten() {
        e.set_switch_hold(None);
    }
    sim.run(30);
    assert_eq!(sim.online_on(0), vec![1], "switched once released");
    // While it moves, the engines say so.
    sim.command(1, "app1", Command::Switch(Some(1)))
        .unwrap_err();
    sim.command(1, "app1", Command::Clear).unwrap();
    sim.run(10);
    sim.command(1, "app1", Command::Switch(Some(1))).unwrap();
    let during = sim.engines[1].as_ref().unwrap().transition();
    assert!(
        during.as_deref().is_some_and(|t| t.contains("app1 is")),
        "{during:?}"
    );
    sim.run(30);
    assert_eq!(sim.engines[1].as_ref().unwrap().transition(), None);
}

#[test]
fn failed_stop_leaves_it_faulted_where_it_was() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 2)]);
    sim.run(20);
    sim.fail_stop.insert((0, 0, 0));
    sim.command(0, "app1", Command::Switch(Some(2))).unwrap();
    sim.run(50);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    assert_ne!(sim.state(1, 0), AppState::Online);
    assert!(
        sim.ops_of(1, OpKind::Start).is_empty(),
        "never started elsewhere"
    );
    // Once the stop works, clearing the fault cleans up and the switch can happen.
    sim.fail_stop.clear();
    sim.command(1, "app1", Command::Clear).unwrap();
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Offline);
    assert_eq!(
        sim.online_on(0),
        vec![1],
        "the switch goes on once the stop worked"
    );
}

#[test]
fn halt_flag_asks_for_the_faulted_node_to_be_killed_and_goes_on_once_it_is() {
    let mut s = spec("app1", &[1, 2], 1);
    s.halt_flag = true;
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    sim.fail_stop.insert((0, 0, 0));
    sim.check_says.insert((0, 0, 0), ResourceState::Faulted);
    sim.run(30);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    assert_eq!(
        sim.kills,
        vec![(1, 1)],
        "node 2 asks for node 1 to be killed"
    );
    assert!(sim.online_on(0).is_empty());
    sim.crash(0);
    sim.proved[0] = Some(1);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![1]);
}

#[test]
fn a_silent_node_is_leftcluster_and_its_application_waits_until_proved_down() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 2)]);
    sim.run(20);
    sim.crash(0);
    sim.run(50);
    assert!(sim.online_on(0).is_empty(), "no proof: waits");
    let held: Vec<&String> = sim
        .events
        .iter()
        .filter_map(|(n, e)| match e {
            AppEvent::Waiting { why, .. } if *n == 1 && why.contains("LEFTCLUSTER") => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(
        held.len(),
        1,
        "the coordinator says once why it holds: {held:?}"
    );
    assert!(sim
        .command(1, "app1", Command::Switch(Some(2)))
        .unwrap_err()
        .contains("LEFTCLUSTER"));
    sim.proved[0] = Some(1);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![1]);
    // The dead node comes back: it joins as Offline, the application stays.
    sim.boot(0);
    sim.run(30);
    assert_eq!(sim.online_on(0), vec![1]);
    assert_eq!(sim.state(0, 0), AppState::Offline);
}

#[test]
fn a_partition_never_runs_it_twice() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 1)]);
    sim.run(20);
    sim.connected = vec![vec![true, false], vec![false, true]];
    sim.run(50);
    assert_eq!(sim.online_on(0), vec![0], "stays where it ran");
    sim.connected = vec![vec![true; 2]; 2];
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
}

#[test]
fn maintenance_reports_failures_without_acting() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 1)]);
    sim.run(20);
    sim.command(1, "app1", Command::Maintenance(true)).unwrap();
    sim.run(5);
    assert_eq!(
        sim.state(0, 0),
        AppState::Online,
        "each node keeps showing its true state in maintenance"
    );
    sim.running[0][0][0] = false;
    sim.ops.clear();
    sim.run(30);
    assert!(sim.ops_of(0, OpKind::Stop).is_empty(), "no action");
    assert!(sim.ops_of(0, OpKind::Check).len() >= 2, "checks go on");
    assert!(sim.events.iter().any(|(n, e)| *n == 0
        && matches!(e, AppEvent::ResourceFault { action, .. } if action.contains("maintenance"))));
    assert!(sim
        .command(0, "app1", Command::Switch(None))
        .unwrap_err()
        .contains("maintenance"));
    sim.command(0, "app1", Command::Maintenance(false)).unwrap();
    sim.run(30);
    assert_eq!(
        sim.online_on(0),
        vec![1],
        "acts again once maintenance is off"
    );
}

#[test]
fn persistent_fault_survives_a_restart_until_cleared() {
    let mut s = spec("app1", &[1, 2], 1);
    s.persistent_fault = true;
    s.switch_on.remove(&SwitchTrigger::ResourceFailure);
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    sim.running[0][0][0] = false;
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    assert!(
        sim.online_on(0).is_empty(),
        "no ResourceFailure: stays Faulted"
    );
    sim.crash(0);
    sim.proved[0] = Some(1);
    sim.run(5);
    sim.boot(0);
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Faulted, "fault persisted");
    sim.command(1, "app1", Command::Clear).unwrap();
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Offline);
    assert_eq!(
        sim.online_on(0),
        vec![1],
        "moved when its node was proved dead"
    );
}

#[test]
fn restart_of_the_agent_adopts_running_resources() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 2)]);
    sim.run(20);
    // The agent restarts; its resources still run.
    sim.engines[0] = None;
    sim.run(3);
    sim.boot(0);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
}

#[test]
fn offline_and_online_commands() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 1)]);
    sim.run(20);
    sim.command(1, "app1", Command::Offline).unwrap();
    sim.run(20);
    assert!(sim.online_on(0).is_empty());
    assert!(sim.command(1, "app1", Command::Offline).is_err());
    sim.command(1, "app1", Command::Online).unwrap();
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
}

#[test]
fn standby_on_the_other_node_at_startup() {
    let mut s = spec("app1", &[1, 2], 2);
    s.resources[1].standby_capable = true;
    s.standby_transitions = vec![StandbyTransition::Startup];
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    assert_eq!(sim.state(1, 0), AppState::Standby);
    assert_eq!(sim.ops_of(1, OpKind::StartStandby), vec![1]);
}

/// Each ALLEXITCODES code of a check drives the state it names on an Online node.
#[test]
fn cmdline_all_exit_codes_drive_their_states() {
    use super::outcome::cmdline_check_state;
    let table = [
        (0, AppState::Online),
        (1, AppState::Faulted),
        (2, AppState::Faulted),
        (3, AppState::Online),
        (4, AppState::Faulted),
        (5, AppState::Warning),
        (6, AppState::Faulted),
    ];
    for (code, expect) in table {
        let mut s = spec("app1", &[1, 2], 1);
        s.switch_on.clear();
        let mut sim = Sim::new(2, vec![s]);
        sim.run(20);
        sim.check_says
            .insert((0, 0, 0), cmdline_check_state(code, true));
        sim.run(20);
        assert_eq!(sim.state(0, 0), expect, "exit code {code}");
    }
}

#[test]
fn shutdown_switches_when_allowed() {
    let mut s = spec("app1", &[1, 2], 1);
    s.switch_on.insert(SwitchTrigger::ShutDown);
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    let now = sim.now;
    let a = sim.engines[0].as_mut().unwrap().shutdown(now);
    sim.actions(0, a);
    sim.run(20);
    assert!(sim.engines[0].as_ref().unwrap().all_inactive());
    assert_eq!(sim.online_on(0), vec![1]);
    assert!(sim
        .ops
        .iter()
        .any(|o| o.0 == 0 && o.3 == OpKind::Stop && o.4 == Some(OfflineReason::Shut)));
}

/// Found by the guest simulation: an agent restarted while its application ran, and
/// the probe's check could not tell (it failed, timed out or said Unknown). The probe
/// concluded Offline, so the node acknowledged a switch and the other node started the
/// application beside the still running resource.
#[test]
fn a_probe_that_cannot_tell_does_not_report_the_application_stopped() {
    for unsure in [ResourceState::Unknown, ResourceState::Faulted] {
        let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 1)]);
        sim.run(20);
        assert_eq!(sim.online_on(0), vec![0]);
        // The agent restarts at once; its resource runs on, but the check cannot tell.
        // An operator switches the application meanwhile.
        sim.check_says.insert((0, 0, 0), unsure);
        sim.boot(0);
        sim.command(1, "app1", Command::Switch(Some(2))).unwrap();
        // Every round checks that it never runs on both nodes.
        sim.run(30);
        assert_eq!(sim.online_on(0), vec![1], "{unsure:?}");
        assert!(!sim.running[0][0][0], "stopped where it ran ({unsure:?})");
    }
}

/// A node that comes back with a new incarnation (DOWN until it joins) no longer runs
/// what it ran: the application switches as for a node failure, and does not go back.
#[test]
fn a_restarted_node_lets_its_application_switch() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 2)]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    sim.crash(0);
    sim.run(30);
    assert!(sim.online_on(0).is_empty(), "LEFTCLUSTER: waits");
    sim.rejoining.insert(0);
    sim.boot(0);
    sim.run(30);
    assert_eq!(
        sim.online_on(0),
        vec![1],
        "switched while the node was DOWN"
    );
    sim.rejoining.clear();
    sim.run(30);
    assert_eq!(sim.online_on(0), vec![1], "no failback once it is UP");
}

/// Found by the guest simulation: a fault recorded after a clear given during a
/// partition, when the other side's later placements (without that clear) won. The
/// clear generation went back below the fault's, so the next clear, once everything
/// was healed, did not clear it although it said so.
#[test]
fn a_clear_clears_a_fault_recorded_under_a_clear_generation_that_was_lost() {
    let mut s = spec("app1", &[1, 2], 1);
    s.switch_on.clear();
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![0]);
    // The resource fails: Faulted on node 1 (no ResourceFailure switch).
    sim.running[0][0][0] = false;
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    // Partition. Node 1 is cleared, its stop fails: Faulted again, under the new clear.
    sim.connected = vec![vec![true, false], vec![false, true]];
    sim.fail_stop.insert((0, 0, 0));
    sim.command(0, "app1", Command::Clear).unwrap();
    sim.run(10);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    // Node 2 writes placements of its own, without that clear; they win once healed.
    sim.command(1, "app1", Command::Maintenance(true)).unwrap();
    sim.command(1, "app1", Command::Maintenance(false)).unwrap();
    sim.fail_stop.clear();
    sim.connected = vec![vec![true; 2]; 2];
    sim.run(10);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    sim.command(1, "app1", Command::Clear).unwrap();
    sim.run(20);
    assert_eq!(sim.state(0, 0), AppState::Offline, "the clear cleared it");
}

/// Answers every operation of `actions` (and of what follows) as on a resource that is
/// not running; records the resources started.
fn answer(e: &mut Engine, now: Duration, actions: Vec<AppAction>, starts: &mut Vec<usize>) {
    let mut queue = actions;
    while let Some(action) = queue.pop() {
        if let AppAction::Run(op) = action {
            let state = match op.kind {
                OpKind::Start => {
                    starts.push(op.resource);
                    ResourceState::Online
                }
                _ => ResourceState::Offline,
            };
            queue.extend(e.on_result(now, op.id, OpOutcome::Done(state)));
        }
    }
}

/// Found by the guest simulation: node 1 died, was proved down, and restarted while
/// the link from it to node 2 was cut. Node 2 still held it dead; node 1 heard node 2
/// report the application inactive and started it, while node 2, to which node 1 was
/// dead, started it too on an operator's switch.
#[test]
fn a_restarted_node_does_not_start_while_a_peer_still_holds_it_down() {
    let mut s = spec("app1", &[1, 2], 1);
    s.switch_on.clear();
    let placement = Placement {
        version: Version {
            epoch: 1,
            issuer: 1,
        },
        target: Some(1),
        reason: PlacementReason::Startup,
        ..Placement::default()
    };
    let disk = Persistent {
        placements: [("app1".to_string(), placement)].into_iter().collect(),
        ..Persistent::default()
    };
    let view = |id, heard, proved_down| NodeView {
        id,
        state: if heard {
            GuestNodeState::Up
        } else {
            GuestNodeState::Down
        },
        heard,
        proved_down,
        incarnation: 1,
    };
    let t = Duration::from_secs(1);
    let mut one = Engine::new(1, vec![s.clone()], &disk, Duration::ZERO);
    let mut two = Engine::new(2, vec![s], &disk, Duration::ZERO);
    let (mut started_one, mut started_two) = (Vec::new(), Vec::new());
    let a = two.set_nodes(t, vec![view(1, false, true)]);
    answer(&mut two, t, a, &mut started_two);
    let a = one.set_nodes(t, vec![view(2, true, false)]);
    answer(&mut one, t, a, &mut started_one);
    for round in 2..10 {
        let now = t * round;
        let a = one.on_gossip(now, 2, 1, &two.gossip());
        answer(&mut one, now, a, &mut started_one);
        let a = one.tick(now);
        answer(&mut one, now, a, &mut started_one);
        let a = two.tick(now);
        answer(&mut two, now, a, &mut started_two);
    }
    assert!(
        started_one.is_empty(),
        "node 1 waits: to node 2 it is dead, so node 2 may start it at any time"
    );
    // As node 2 does, on an operator's switch.
    let (_, a) = two
        .command(t * 10, "app1", Command::Switch(Some(2)))
        .unwrap();
    answer(&mut two, t * 10, a, &mut started_two);
    assert_eq!(started_two, vec![0]);
}

/// Found by the guest simulation: two nodes restarted cut off from each other, and
/// each took from a third node the proof of the other's previous incarnation: each
/// held the other dead and both started the application. A node relies only on the
/// death of an incarnation it heard since it started, or on the operator's word.
#[test]
fn only_proofs_of_an_incarnation_heard_here_are_relied_on() {
    use crate::membership::{FailReason, HostState, PeerStatus, WatchdogVerdict};
    let peer = |state, incarnation| PeerStatus {
        node: 2,
        state,
        state_for_ms: 0,
        links: Vec::new(),
        incarnation: Some(incarnation),
        watchdog: WatchdogVerdict::Ok,
        must_rejoin: false,
        panic_noticed: false,
        silent_for_ms: None,
        config_mismatch: false,
        quorate: true,
    };
    let dead_after = Duration::from_millis(800);
    let proof = |incarnation| DownProof {
        node: 2,
        incarnation,
    };
    // Never heard here: node 2 may have restarted since incarnation 5 died.
    let mut nodes = GuestNodes::new(1, &[1, 2], dead_after);
    assert_eq!(nodes.prove_down(proof(5)), None);
    assert!(!nodes.views()[0].proved_down);
    // The operator's word holds where it is given, and is not passed on.
    assert!(nodes.prove_down(proof(0)).is_some());
    assert!(nodes.views()[0].proved_down);
    assert!(nodes.proofs().is_empty());
    // Heard, then silent: the death of what was heard holds, and is passed on.
    let mut nodes = GuestNodes::new(1, &[1, 2], dead_after);
    nodes.update(&[peer(HostState::Up, 6)]);
    nodes.update(&[peer(HostState::Failed(FailReason::Silent), 6)]);
    assert!(nodes.prove_down(proof(6)).is_some());
    assert!(nodes.views()[0].proved_down);
    assert_eq!(nodes.proofs(), vec![proof(6)]);
}

/// HaltFlag also covers a stop that fails during an operator switch: the application is
/// stuck on the node it was leaving, which is killed before the switch goes on.
#[test]
fn halt_flag_covers_a_stop_that_fails_during_a_switch() {
    let mut s = spec("app1", &[1, 2], 1);
    s.halt_flag = true;
    let mut sim = Sim::new(2, vec![s]);
    sim.run(20);
    sim.fail_stop.insert((0, 0, 0));
    sim.command(0, "app1", Command::Switch(Some(2))).unwrap();
    sim.run(30);
    assert_eq!(sim.state(0, 0), AppState::Faulted);
    assert_eq!(
        sim.kills,
        vec![(1, 1)],
        "node 2 asks for node 1 to be killed"
    );
    assert!(
        sim.online_on(0).is_empty(),
        "never on node 2 while node 1 may run it"
    );
    sim.crash(0);
    sim.proved[0] = Some(1);
    sim.run(20);
    assert_eq!(sim.online_on(0), vec![1]);
}

/// Start-up that waits for a node of the application says so, once.
#[test]
fn start_up_says_once_which_node_it_waits_for() {
    let mut sim = Sim::new(2, vec![spec("app1", &[1, 2], 1)]);
    sim.crash(1);
    sim.run(40);
    assert!(sim.online_on(0).is_empty(), "waits for node 2");
    let waits: Vec<&String> = sim
        .events
        .iter()
        .filter_map(|(n, e)| match e {
            AppEvent::Waiting { why, .. } if *n == 0 && why.contains("start-up waits") => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(waits[0].contains("node 2"), "{waits:?}");
}
