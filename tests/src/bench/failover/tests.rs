use serde_json::json;

use super::*;

/// Start of every test run, µs since the epoch.
const T0: u64 = 1_700_000_000_000_000;

/// Events from a table: `ms observer kind subject [arg]`, ms since `T0`; `arg` is the
/// new state of a `host_state` (`failed` for Failed), `app_state` or `node_state`
/// event, or the requester of a `guest_destroying` or `guest_destroyed` one.
fn events(table: &str) -> Vec<EventRecord> {
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ms, observer, kind, subject) = (f[0], f[1], f[2], f[3]);
            let detail = match (kind, f.get(4)) {
                ("host_state", Some(&"failed")) => {
                    json!({"host_state": {"from": "suspect", "node": 1, "to": {"failed": "silent"}}})
                }
                ("host_state", Some(to)) => json!({"host_state": {"node": 1, "to": to}}),
                ("app_state", Some(to)) => json!({"state": {"app": subject, "to": to}}),
                ("node_state", Some(to)) => json!({"from": "UP", "to": to}),
                ("guest_destroying", Some(by)) => json!({"by": by, "command": "kill"}),
                ("guest_destroyed", Some(by)) => json!({"by": by, "ok": true, "order": 1}),
                _ => json!({}),
            };
            EventRecord {
                seq: i as u64,
                unix_us: T0 + ms.parse::<u64>().expect("ms") * 1000,
                observer: observer.into(),
                subject: Some(subject.into()),
                kind: kind.into(),
                message: line.into(),
                detail,
            }
        })
        .collect()
}

fn at(ms: u64) -> u64 {
    T0 + ms * 1000
}

fn host_fault(ms: u64, end: GuestEnd) -> Fault {
    Fault {
        at_us: at(ms),
        host: Some("h1".into()),
        guests: vec!["g1".into()],
        end,
    }
}

fn app1() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([("app1".into(), vec!["g1".into(), "g2".into()])])
}

fn phases(list: &[(&'static str, f64)]) -> BTreeMap<&'static str, f64> {
    list.iter().copied().collect()
}

#[test]
fn linked_power_loss_phases_chain_from_the_fault() {
    let ev = events(
        "
        0     g1 app_state        app1 Online
        1990  h3 host_state       h1   suspect
        2000  h3 host_state       h1   failed
        2020  h2 host_state       h1   failed
        2260  h2 host_down        h1
        2261  h3 host_down        h1
        # the host's record of the notice it sent is not the guest's
        2270  h2 host_down_notice g2
        2271  g2 host_down_notice g2
        2272  g2 node_state       g1
        2273  g2 app_state        app1 Wait
        2280  g2 app_state        app1 Online
        ",
    );
    let run = analyse(&host_fault(1000, GuestEnd::AtFault), &app1(), &ev, at(3000));
    assert_eq!(
        run,
        FailoverRun {
            app: Some("app1".into()),
            partner: Some("g2".into()),
            phases: phases(&[
                ("detect", 1000.0),
                ("fence", 260.0),
                ("notify", 11.0),
                ("switch", 9.0),
                ("total", 1280.0),
            ]),
            stuck_ms: None,
            violations: 0,
        }
    );
}

#[test]
fn no_host_link_run_reports_the_time_stuck_instead_of_a_switch() {
    let ev = events(
        "
        0     g1 app_state  app1 Online
        2000  h3 host_state h1   failed
        2300  h2 host_down  h1
        2310  h3 host_down  h1
        2500  g2 node_state g1
        ",
    );
    let run = analyse(&host_fault(1000, GuestEnd::AtFault), &app1(), &ev, at(7600));
    assert_eq!(run.phases, phases(&[("detect", 1000.0), ("fence", 300.0)]));
    assert_eq!(run.partner, None);
    assert_eq!(run.stuck_ms, Some(6600.0));
    assert_eq!(run.violations, 0);
}

#[test]
fn partner_online_before_a_hung_host_is_down_is_a_violation() {
    // The frozen g1 still holds app1 until h1 is confirmed off at 2300.
    let ev = events(
        "
        0     g1 app_state app1 Online
        1500  g2 app_state app1 Online
        2300  h2 host_down h1
        ",
    );
    let hang = analyse(
        &host_fault(1000, GuestEnd::AtHostDown),
        &app1(),
        &ev,
        at(3000),
    );
    assert_eq!(hang.violations, 1);
    // After a power loss g1 is gone at the fault: the same events are no violation.
    let loss = analyse(&host_fault(1000, GuestEnd::AtFault), &app1(), &ev, at(3000));
    assert_eq!(loss.violations, 0);
    assert_eq!(loss.phases, phases(&[("total", 500.0)]));
}

#[test]
fn hung_host_fenced_before_the_switch_is_no_violation() {
    let ev = events(
        "
        0     g1 app_state        app1 Online
        2000  h3 host_state       h1   failed
        2300  h2 host_down        h1
        2310  g2 host_down_notice g2
        2330  g2 app_state        app1 Online
        ",
    );
    let run = analyse(
        &host_fault(1000, GuestEnd::AtHostDown),
        &app1(),
        &ev,
        at(3000),
    );
    assert_eq!(run.violations, 0);
    assert_eq!(run.phases["total"], 1330.0);
}

#[test]
fn overlaps_before_the_fault_count_and_warning_runs() {
    let ev = events(
        "
        0     g1 app_state app1 Online
        100   g2 app_state app1 Warning
        200   g2 app_state app1 Wait
        300   g2 app_state app1 Offline
        400   g2 app_state app1 Online
        500   g2 app_state app1 Faulted
        ",
    );
    let run = analyse(&host_fault(1000, GuestEnd::AtFault), &app1(), &ev, at(3000));
    assert_eq!(run.violations, 2);
    // Nothing came Online after the fault: stuck from the fault to the end.
    assert_eq!(run.stuck_ms, Some(2000.0));
}

#[test]
fn hand_over_at_one_instant_is_no_violation() {
    let ev = events(
        "
        0     g1 app_state app1 Online
        500   g1 app_state app1 Wait
        900   g2 app_state app1 Online
        900   g1 app_state app1 Offline
        ",
    );
    let run = analyse(&host_fault(1000, GuestEnd::AtFault), &app1(), &ev, at(3000));
    assert_eq!(run.violations, 0);
}

#[test]
fn a_crashed_guest_that_boots_again_can_overlap() {
    let fault = Fault {
        at_us: at(1000),
        host: None,
        guests: vec!["g1".into()],
        end: GuestEnd::AtFault,
    };
    let ev = events(
        "
        0     g1 app_state app1 Online
        3000  g2 app_state app1 Online
        4000  g1 app_state app1 Offline
        5000  g1 app_state app1 Online
        ",
    );
    let run = analyse(&fault, &app1(), &ev, at(6000));
    assert_eq!(run.violations, 1);
    // No host: no host phases, only the total.
    assert_eq!(run.phases, phases(&[("total", 2000.0)]));
}

#[test]
fn applications_of_other_guests_count_separately() {
    let apps = BTreeMap::from([
        ("app1".into(), vec!["g1".into(), "g2".into()]),
        ("app2".into(), vec!["g2".into(), "g3".into()]),
    ]);
    let ev = events(
        "
        0     g1 app_state app1 Online
        0     g2 app_state app2 Online
        1500  g2 app_state app1 Online
        ",
    );
    let run = analyse(&host_fault(1000, GuestEnd::AtFault), &apps, &ev, at(3000));
    assert_eq!(run.app.as_deref(), Some("app1"));
    assert_eq!(run.violations, 0);
}

fn guest_hang(ms: u64) -> Fault {
    Fault {
        at_us: at(ms),
        host: None,
        guests: vec!["g1".into()],
        end: GuestEnd::AtDestroyed,
    }
}

#[test]
fn guest_hang_phases_run_through_the_kill_by_the_hosts() {
    // The destroyed event names the host, not the guest: it is matched to the
    // destroying event before it by the same host for the same requester.
    let ev = events(
        "
        0     g1 app_state        app1 Online
        1370  g2 node_state       g1   LEFTCLUSTER
        1871  h1 guest_destroying g1   h2
        1928  h1 guest_destroyed  h1   h2
        1929  g2 node_killed      g1
        1929  g2 node_state       g1   DOWN
        1937  g2 app_state        app1 Online
        ",
    );
    let run = analyse(&guest_hang(555), &app1(), &ev, at(3000));
    assert_eq!(
        run.phases,
        phases(&[
            ("detect", 815.0),
            ("fence", 558.0),
            ("notify", 1.0),
            ("switch", 8.0),
            ("total", 1382.0),
        ])
    );
    assert_eq!(run.violations, 0);
}

#[test]
fn partner_online_before_a_hung_guest_is_destroyed_is_a_violation() {
    let ev = events(
        "
        0     g1 app_state        app1 Online
        1370  g2 node_state       g1   LEFTCLUSTER
        1500  g2 app_state        app1 Online
        1871  h1 guest_destroying g1   h2
        1928  h1 guest_destroyed  h1   h2
        ",
    );
    let run = analyse(&guest_hang(555), &app1(), &ev, at(3000));
    assert_eq!(run.violations, 1);
    // Never destroyed: the frozen g1 counts as Online to the end.
    let run = analyse(&guest_hang(555), &app1(), &ev[..3], at(3000));
    assert_eq!(run.violations, 1);
    assert_eq!(run.phases.get("fence"), None);
}

#[test]
fn faults_and_applications_of_the_linked_scenarios() {
    let fault = |name: &str| Fault::of(&Scenario::load(name).expect(name), 7).expect(name);
    let on_h1 = |end| Fault {
        at_us: 7,
        host: Some("h1".into()),
        guests: vec!["g1".into()],
        end,
    };
    assert_eq!(fault("linked-power-loss"), on_h1(GuestEnd::AtFault));
    // The crash, not the kdump notice after it, says what happened to the guests.
    assert_eq!(fault("linked-kdump-panic"), on_h1(GuestEnd::AtFault));
    assert_eq!(fault("linked-hang"), on_h1(GuestEnd::AtHostDown));
    assert_eq!(fault("no-host-link"), on_h1(GuestEnd::AtFault));
    assert_eq!(
        fault("guest-hang"),
        Fault {
            host: None,
            end: GuestEnd::AtDestroyed,
            ..on_h1(GuestEnd::AtDestroyed)
        }
    );
    assert_eq!(
        applications(&Scenario::load("linked-hang").unwrap()),
        app1()
    );
    let detect = Scenario::load("detect-power-loss").unwrap();
    assert!(validate(&detect).is_err());
}

#[test]
fn json_shape_of_a_stuck_run() {
    let p = percentiles(&[6600.0]);
    let bench = FailoverBench {
        bench: "failover".into(),
        scenario: "no-host-link".into(),
        runs: 1,
        ok_runs: 1,
        phases_ms: BTreeMap::from([("detect".to_string(), p.unwrap())]),
        stuck_ms: p,
        stuck_runs: 1,
        violations: 0,
        failures: vec![],
    };
    let v: serde_json::Value = serde_json::to_value(&bench).unwrap();
    assert_eq!(v["stuck_ms"]["p95"], 6600.0);
    assert_eq!(v["stuck_runs"], 1);
    assert!(v.get("failures").is_none());
}
