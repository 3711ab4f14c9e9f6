//! The host link: host-down notices, kills through the hosts, migrations.

use std::time::Duration;

use super::cluster::Cluster;
use super::{logged, settled, settled_n, S};
use crate::admin::GuestNodeState;
use crate::application::AppState;
use crate::guest::{Effect, Event, KILL_STAGGER};
use crate::hostlink::LinkMessage;

fn host_down(c: &mut Cluster, to: usize, epoch: u64, guests: Vec<(u32, u64)>) -> Vec<Effect> {
    let m = LinkMessage::HostDown {
        epoch,
        host: "hv2".into(),
        proof: "power-off".into(),
        guests,
    };
    c.step(to, Event::Link(m))
}

#[test]
fn a_host_down_notice_holds_its_guests_dead_at_once_and_switches() {
    let mut c = settled(true, false);
    let inc = c.incarnation(1);
    c.crash(1);
    let effects = host_down(&mut c, 0, 7, vec![(2, inc), (1, 5), (42, 1)]);
    assert!(effects.contains(&Effect::SendLink(LinkMessage::HostDownAck { epoch: 7 })));
    assert!(effects.contains(&Effect::Count("host_down_notices")));
    assert_eq!(c.node_state(0, 1), Some(GuestNodeState::Down));
    assert!(
        logged(&c, "hv2 is DOWN (power-off): g2 died with it"),
        "{:#?}",
        c.log
    );
    c.run(S);
    assert_eq!(
        c.running_on(0),
        vec![1],
        "switched without waiting for the silence"
    );
}

#[test]
fn a_host_down_notice_does_not_cover_a_newer_incarnation() {
    let mut c = settled(true, false);
    let inc = c.incarnation(1);
    // g2's agent restarted since its host reported it.
    c.cores[1] = None;
    c.boot(1);
    c.run(2 * S);
    c.take_log();
    host_down(&mut c, 0, 1, vec![(2, inc)]);
    assert!(
        logged(
            &c,
            "no partner of this guest died with it; not taken for dead: g2"
        ),
        "{:#?}",
        c.log
    );
    assert_eq!(c.node_state(0, 1), Some(GuestNodeState::Up));
    c.run(S);
    assert_eq!(c.running_on(0), vec![2]);
}

#[test]
fn a_silent_partner_is_killed_through_the_hosts_lower_id_first() {
    let mut c = settled_n(2, true, false);
    c.isolate(1);
    // g1 (lower id than g2) asks at once; g2 waits the stagger before asking for g1,
    // and is destroyed meanwhile.
    c.run(Duration::from_millis(900));
    c.run(Duration::from_millis(150));
    assert!(
        c.sent_to_host(0, |m| matches!(
            m,
            LinkMessage::KillRequest { node_id: 2, .. }
        )),
        "{:#?}",
        c.log
    );
    assert!(!c.sent_to_host(1, |m| matches!(m, LinkMessage::KillRequest { .. })));
    c.run(S);
    assert!(
        logged(&c, "g2 was killed through the hosts (destroyed)"),
        "{:#?}",
        c.log
    );
    assert!(KILL_STAGGER > Duration::from_millis(100));
    c.run(S);
    assert_eq!(c.node_state(0, 1), Some(GuestNodeState::Down));
    assert_eq!(c.running_on(0), vec![1]);
}

#[test]
fn a_kill_refused_for_now_is_asked_again_and_a_final_refusal_is_reported() {
    let mut c = settled_n(2, true, false);
    c.isolate(1);
    c.run(S);
    let request = c
        .effects
        .iter()
        .find_map(|(n, e)| match (n, e) {
            (0, Effect::SendLink(LinkMessage::KillRequest { request, .. })) => Some(*request),
            _ => None,
        })
        .expect("g1 asked");
    // Answers to requests not in flight are ignored.
    let none = c.step(
        0,
        Event::Link(LinkMessage::KillResult {
            request: 99,
            ok: true,
            detail: String::new(),
            retry_after_ms: 0,
        }),
    );
    assert!(none.is_empty());
    let mut c2 = settled_n(2, true, false);
    c2.isolate(1);
    // The hosts carry out nobody's requests.
    c2.linked = vec![None, None];
    c2.run(S);
    let request2 = c2
        .effects
        .iter()
        .find_map(|(n, e)| match (n, e) {
            (0, Effect::SendLink(LinkMessage::KillRequest { request, .. })) => Some(*request),
            _ => None,
        })
        .expect("g1 asked");
    let retry = LinkMessage::KillResult {
        request: request2,
        ok: false,
        detail: "slow host".into(),
        retry_after_ms: 300,
    };
    c2.step(0, Event::Link(retry));
    let asked = |c: &Cluster| {
        c.effects
            .iter()
            .filter(|(n, e)| {
                *n == 0 && matches!(e, Effect::SendLink(LinkMessage::KillRequest { .. }))
            })
            .count()
    };
    let before = asked(&c2);
    c2.run(Duration::from_millis(400));
    assert_eq!(asked(&c2), before + 1, "asked again after the pause");
    let last = c2
        .effects
        .iter()
        .rev()
        .find_map(|(n, e)| match (n, e) {
            (0, Effect::SendLink(LinkMessage::KillRequest { request, .. })) => Some(*request),
            _ => None,
        })
        .unwrap();
    c2.step(
        0,
        Event::Link(LinkMessage::KillResult {
            request: last,
            ok: false,
            detail: "its host does not answer".into(),
            retry_after_ms: 0,
        }),
    );
    assert!(logged(
        &c2,
        "g2 could not be killed through the hosts: its host does not answer"
    ));
    assert_eq!(c2.node_state(0, 1), Some(GuestNodeState::LeftCluster));
    assert!(request > 0);
}

#[test]
fn requests_in_flight_are_asked_again_after_the_link_comes_back() {
    let mut c = settled_n(2, true, false);
    c.isolate(1);
    c.linked = vec![None, None];
    c.run(S);
    let asked = |c: &Cluster| {
        c.effects
            .iter()
            .filter(|(n, e)| {
                *n == 0 && matches!(e, Effect::SendLink(LinkMessage::KillRequest { .. }))
            })
            .count()
    };
    assert_eq!(asked(&c), 1);
    c.step(
        0,
        Event::LinkLost {
            why: "broken pipe".into(),
        },
    );
    assert!(logged(&c, "g1: no host link (broken pipe); retrying"));
    assert_eq!(c.core(0).linked_to(), None);
    c.run(S);
    assert_eq!(asked(&c), 1, "not linked: nothing is asked");
    c.link(0, "hv1");
    c.run(Duration::from_millis(600));
    assert_eq!(asked(&c), 2, "asked again once linked");
    assert_eq!(c.core(0).linked_to(), Some("hv1"));
}

#[test]
fn halt_flag_kills_go_through_the_hosts_or_ask_the_operator() {
    for link in [false, true] {
        let mut c = settled(link, true);
        c.fail.push((1, 0, crate::application::OpKind::Stop));
        c.operator(
            1,
            crate::admin::Request::AppSwitch {
                app: "web".into(),
                node: Some("g1".into()),
            },
        );
        c.run(2 * S);
        if link {
            assert!(
                logged(
                    &c,
                    "g2 must be killed (HaltFlag: its stop failed): asked hv"
                ),
                "{:#?}",
                c.log
            );
            c.run(3 * S);
            assert_eq!(c.running_on(0), vec![1], "{:#?}", c.log);
        } else {
            assert!(logged(&c, "there is no host link to do it"), "{:#?}", c.log);
        }
    }
}

#[test]
fn a_migration_is_refused_during_a_switch_and_holds_switchovers_when_accepted() {
    let mut c = settled(true, false);
    c.operator(
        0,
        crate::admin::Request::AppSwitch {
            app: "web".into(),
            node: Some("g3".into()),
        },
    );
    c.run(Duration::from_millis(100));
    let effects = c.step(
        1,
        Event::Link(LinkMessage::MigrationPrepare {
            id: 1,
            hold_ms: 30_000,
        }),
    );
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::SendLink(LinkMessage::MigrationAnswer { ok: false, .. })
        )),
        "{effects:?}"
    );
    c.run(2 * S);
    assert_eq!(c.running_on(0), vec![3]);
    let effects = c.step(
        2,
        Event::Link(LinkMessage::MigrationPrepare {
            id: 2,
            hold_ms: 30_000,
        }),
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::SendLink(LinkMessage::MigrationAnswer { ok: true, .. })
    )));
    c.run(S);
    assert!(c.core(0).migration_hold() && c.core(2).migration_hold());
    // A partner asked to move meanwhile refuses: one move at a time.
    let effects = c.step(
        0,
        Event::Link(LinkMessage::MigrationPrepare {
            id: 3,
            hold_ms: 30_000,
        }),
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::SendLink(LinkMessage::MigrationAnswer { ok: false, detail, .. }) if detail.contains("g3 is being moved already"))));
    // Paused by the move: its silence is forgiven, nothing switches.
    c.pause(2, 3 * S);
    assert_ne!(c.node_state(0, 2), Some(GuestNodeState::LeftCluster));
    assert_eq!(c.app_state(0, 0), AppState::Offline);
    assert_eq!(c.running_on(0), vec![3]);
    c.link(2, "hv9");
    assert!(
        logged(&c, "the move is over (it now runs on hv9)"),
        "{:#?}",
        c.log
    );
    c.run(S);
    assert!(!c.core(0).migration_hold());
    // A migration that did not happen ends by the host's word.
    c.step(
        1,
        Event::Link(LinkMessage::MigrationPrepare {
            id: 4,
            hold_ms: 30_000,
        }),
    );
    c.step(1, Event::Link(LinkMessage::MigrationEnd { id: 5 }));
    assert!(c.core(1).migration_hold(), "another migration's end");
    c.step(1, Event::Link(LinkMessage::MigrationEnd { id: 4 }));
    assert!(!c.core(1).migration_hold());
    c.link(1, "hv2");
    assert!(!logged(&c, "g2: the move is over (it now runs"));
}
