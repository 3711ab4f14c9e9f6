//! Nodes that go silent, split or restart: an application never runs twice and waits for
//! proof that a node is down.

use super::*;

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
