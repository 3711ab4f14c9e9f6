//! Resource failures: restart budget, faults that persist until cleared, the halt flag,
//! maintenance and probes that cannot tell.

use super::*;

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
