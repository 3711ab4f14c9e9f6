//! Where an application runs and how it moves: priority order, operator switches, held
//! switchovers, shutdown, offline and standby.

use super::*;

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
