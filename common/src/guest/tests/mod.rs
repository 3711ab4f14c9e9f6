//! Every decision of the guest agent, driven through the core.

mod cases;
mod cluster;
mod link_tests;

use std::time::Duration;

use cluster::{app, Cluster};

use super::{Effect, Event, GuestCore};
use crate::admin::{GuestNodeState, Request, Response};
use crate::application::{DownProof, OpKind, Persistent};

const S: Duration = Duration::from_secs(1);

/// `n` nodes, `web` preferring g2 then g1 (then g3), settled with web Online on g2.
fn settled_n(n: usize, link: bool, halt: bool) -> Cluster {
    let nodes: Vec<u32> = [2, 1, 3, 4].into_iter().take(n).collect();
    let mut c = Cluster::new(n, vec![app("web", &nodes, halt)]);
    if link {
        c.link_all();
    }
    c.run(4 * S);
    assert_eq!(c.running_on(0), vec![2], "{:#?}", c.log);
    c.take_log();
    c
}

/// Three nodes, `web` preferring g2 then g1 then g3, settled with web Online on g2.
fn settled(link: bool, halt: bool) -> Cluster {
    settled_n(3, link, halt)
}

fn logged(c: &Cluster, what: &str) -> bool {
    c.log.iter().any(|l| l.contains(what))
}

#[test]
fn start_records_the_agent_and_a_state_that_could_not_be_read() {
    let mut s = cluster::setup(0, 2, &[], Persistent::default(), 9);
    s.state_problem = Some("applications.json is unreadable".into());
    let (_, effects) = GuestCore::start(s, Duration::ZERO);
    let kinds: Vec<&str> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(r) => Some(r.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["state_unreadable", "agent_started"]);
}

#[test]
fn a_silent_partner_is_left_cluster_and_its_applications_wait_without_a_link() {
    let mut c = settled(false, false);
    c.crash(1);
    c.run(3 * S);
    assert_eq!(c.node_state(0, 1), Some(GuestNodeState::LeftCluster));
    assert_eq!(
        c.running_on(0),
        Vec::<u32>::new(),
        "nothing may start: g2 may run"
    );
    assert!(
        !c.sent_to_host(0, |_| true),
        "no host link, no kill request"
    );
}

#[test]
fn without_a_host_link_configured_nobody_is_asked_to_kill() {
    let mut c = Cluster::configured(2, vec![app("web", &[2, 1], false)], false);
    c.run(3 * S);
    // Even should the driver report a link, nothing was scheduled for one.
    c.link(0, "hv1");
    c.crash(1);
    c.run(3 * S);
    assert_eq!(
        c.node_state(0, 1),
        Some(GuestNodeState::LeftCluster),
        "{:#?}",
        c.log
    );
    assert!(!c.sent_to_host(0, |_| true));
}

#[test]
fn a_heartbeat_recorded_before_this_agent_started_is_only_counted() {
    let mut c = settled(false, false);
    let old = c
        .effects
        .iter()
        .rev()
        .find_map(|(n, e)| match (n, e) {
            (1, Effect::SendHeartbeats { heartbeats, .. }) => Some(heartbeats[0].clone()),
            _ => None,
        })
        .expect("g2 sent heartbeats");
    let inc = c.core(1).membership().incarnation();
    c.cores[0] = None;
    c.boot(0);
    let effects = c.step(
        0,
        Event::Heartbeat {
            sender: 2,
            incarnation: inc,
            accepted: crate::wire::Accepted::First,
            heartbeat: Box::new(old),
        },
    );
    assert!(effects.contains(&Effect::Count("heartbeats_unconfirmed")));
    assert_eq!(c.node_state(0, 1), Some(GuestNodeState::ComingUp));
}

#[test]
fn the_operator_marks_a_silent_node_down_and_the_application_switches() {
    let mut c = settled(false, false);
    let heard = c.operator(0, Request::NodeDown { node: "g2".into() });
    assert!(
        matches!(heard, Response::Refused { ref message } if message.contains("heard alive")),
        "{heard:?}"
    );
    c.crash(1);
    c.run(2 * S);
    let own = c.operator(0, Request::NodeDown { node: "g1".into() });
    assert!(matches!(own, Response::Refused { .. }));
    let unknown = c.operator(0, Request::NodeDown { node: "g9".into() });
    assert!(matches!(unknown, Response::Refused { ref message } if message.contains("no node")));
    let done = c.operator(0, Request::NodeDown { node: "g2".into() });
    assert!(matches!(done, Response::Done { .. }), "{done:?}");
    assert!(logged(&c, "operator: hvctl node down g2: done"));
    c.run(2 * S);
    assert_eq!(
        c.node_state(2, 1),
        Some(GuestNodeState::Down),
        "the proof is gossiped"
    );
    assert_eq!(c.running_on(0), vec![1]);
}

#[test]
fn operator_requests_are_checked_and_carried_out() {
    let mut c = settled(false, false);
    let r = c.operator(
        0,
        Request::AppSwitch {
            app: "web".into(),
            node: Some("g7".into()),
        },
    );
    assert!(matches!(r, Response::Refused { ref message } if message.contains("no node \"g7\"")));
    let r = c.operator(
        0,
        Request::AppSwitch {
            app: "nope".into(),
            node: None,
        },
    );
    assert!(matches!(r, Response::Refused { .. }));
    assert!(logged(&c, "operator: hvctl app switch nope: refused"));
    let r = c.operator(0, Request::Status);
    assert!(
        matches!(r, Response::Refused { ref message } if message.contains("not a guest operator command"))
    );
    let r = c.operator(
        0,
        Request::AppSwitch {
            app: "web".into(),
            node: Some("g3".into()),
        },
    );
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    c.run(2 * S);
    assert_eq!(c.running_on(0), vec![3]);
    let r = c.operator(2, Request::AppOffline { app: "web".into() });
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    c.run(2 * S);
    assert_eq!(c.running_on(0), Vec::<u32>::new());
    for r in [
        Request::AppOnline { app: "web".into() },
        Request::AppMaintenance {
            app: "web".into(),
            on: true,
        },
        Request::AppMaintenance {
            app: "web".into(),
            on: false,
        },
        Request::AppClear { app: "web".into() },
    ] {
        c.operator(1, r);
        c.run(S);
    }
    c.run(2 * S);
    assert_eq!(c.running_on(0), vec![2]);
}

#[test]
fn a_node_held_down_by_the_others_stops_everything() {
    let mut c = settled(false, false);
    let inc = c.core(1).membership().incarnation();
    let mut hb = None;
    for (n, e) in &c.effects {
        if let (0, Effect::SendHeartbeats { heartbeats, .. }) = (n, e) {
            hb = Some(heartbeats[0].clone());
        }
    }
    let mut hb = hb.expect("g1 sent heartbeats");
    hb.proofs = vec![DownProof {
        node: 2,
        incarnation: inc,
    }];
    let g1 = c.core(0).membership().incarnation();
    let effects = c.step(
        1,
        Event::Heartbeat {
            sender: 1,
            incarnation: g1,
            accepted: crate::wire::Accepted::Same,
            heartbeat: Box::new(hb),
        },
    );
    assert!(logged(&c, "g1 holds this node DOWN"), "{:#?}", c.log);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::RunOp(op) if op.kind == OpKind::Stop)));
    c.run(S);
    assert!(!c.running[1][0]);
}

#[test]
fn shutdown_stops_the_applications_here_then_exits() {
    let mut c = settled(false, false);
    assert!(!c.core(1).all_inactive());
    c.step(1, Event::Shutdown);
    assert!(logged(&c, "shutting down"));
    let exits = |c: &Cluster, i: usize| {
        c.effects
            .iter()
            .filter(|(n, e)| *n == i && *e == Effect::Exit)
            .count()
    };
    c.run(S);
    assert!(c.core(1).all_inactive());
    assert!(!c.running[1][0]);
    assert_eq!(exits(&c, 1), 1, "once, after the stop");
    // The exit comes right after a last heartbeat.
    let at = c
        .effects
        .iter()
        .position(|(n, e)| *n == 1 && *e == Effect::Exit);
    let before = &c.effects[at.unwrap() - 1];
    assert!(
        matches!(before, (1, Effect::SendHeartbeats { .. })),
        "{before:?}"
    );
    // Asked twice, it stops once; with nothing running it exits at once.
    c.step(0, Event::Shutdown);
    c.step(0, Event::Shutdown);
    c.run(S);
    assert_eq!(exits(&c, 0), 1, "nothing ran on g1: it exits at once");
    assert!(super::SHUTDOWN_LIMIT > Duration::from_secs(60));
}

#[test]
fn an_agent_whose_stop_hangs_exits_after_the_limit() {
    let mut c = settled(false, false);
    c.step(1, Event::Shutdown);
    // The stop's outcome never comes back.
    let core = c.cores[1].as_mut().unwrap();
    let limit = super::SHUTDOWN_LIMIT;
    let early = core.tick(Duration::from_secs(100));
    assert!(!early.contains(&Effect::Exit));
    let late = core.tick(Duration::from_secs(5) + limit);
    assert!(late.contains(&Effect::Exit), "{late:?}");
}

#[test]
fn an_expelled_node_takes_a_new_incarnation_and_rejoins() {
    let mut c = settled(false, false);
    let before = c.incarnation(0);
    c.isolate(0);
    c.run(2 * S);
    c.cut.clear();
    c.run(3 * S);
    assert!(c.incarnation(0) > before, "g1 rejoined: {:#?}", c.log);
    assert!(logged(&c, "rejoining the guest cluster with incarnation"));
    assert_eq!(c.core(0).membership().incarnation(), c.incarnation(0));
    c.run(2 * S);
    assert_eq!(c.node_state(1, 0), Some(GuestNodeState::Up), "{:#?}", c.log);
    assert_eq!(c.running_on(0).len(), 1, "{:#?}", c.log);
}

#[test]
fn a_rejoin_uses_the_incarnation_in_reserve_or_waits_for_one() {
    for reserve in [true, false] {
        let mut c = settled(false, false);
        if !reserve {
            c.cores[0].as_mut().unwrap().spare_incarnation = None;
        }
        let spare = c.core(0).spare_incarnation;
        c.isolate(0);
        c.run(2 * S);
        c.cut.clear();
        c.run(3 * S);
        let rejoined: Vec<u64> = c
            .effects
            .iter()
            .filter_map(|(n, e)| match (n, e) {
                (0, Effect::Rejoined { incarnation }) => Some(*incarnation),
                _ => None,
            })
            .collect();
        assert_eq!(rejoined.len(), 1, "{:#?}", c.log);
        if reserve {
            assert_eq!(Some(rejoined[0]), spare);
        }
        assert_eq!(c.core(0).membership().incarnation(), rejoined[0]);
        let next = c.core(0).spare_incarnation.expect("a new one in reserve");
        assert!(next > rejoined[0]);
    }
}

#[test]
fn heartbeats_carry_the_ms_left_of_a_migration_and_no_more() {
    let mut c = settled(true, false);
    c.step(
        1,
        Event::Link(crate::hostlink::LinkMessage::MigrationPrepare {
            id: 3,
            hold_ms: 2000,
        }),
    );
    let last = |c: &Cluster| {
        c.effects.iter().rev().find_map(|(n, e)| match (n, e) {
            (1, Effect::SendHeartbeats { heartbeats, .. }) => Some(heartbeats[0].migrating_ms),
            _ => None,
        })
    };
    assert_eq!(last(&c), Some(2000));
    c.run(S);
    let left = last(&c).unwrap();
    assert!((900..=1100).contains(&left), "{left}");
    c.run(2 * S);
    assert_eq!(last(&c), Some(0), "the hold lifted by itself");
    assert!(!c.core(1).migration_hold());
    assert!(!c.core(0).migration_hold());
}
