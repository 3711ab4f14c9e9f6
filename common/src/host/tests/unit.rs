//! The failover path through the core: notices, fencing, DOWN, guests told; guest kills.

use super::*;
use crate::fencing::{FenceEvent, Proof};
use crate::host::{DestroyTarget, Linked, NotRunningFacts};
use crate::hostlink::{KillAnswer, KillOrder, LinkMessage};
use crate::membership::{MembershipEvent, WatchdogVerdict};

fn link(core: &mut HostCore, conn: u64, node_id: NodeId) -> Vec<Effect> {
    let guest = Linked {
        cluster: "erp".into(),
        node: format!("g{node_id}"),
        node_id,
        incarnation: 10 + u64::from(node_id),
        domain: Some(format!("vm-g{node_id}")),
    };
    core.step(ms(0), Event::GuestLinked { conn, guest })
}

fn kdump(from: &str) -> Event {
    Event::Kdump {
        from: format!("{from}:4000").parse().unwrap(),
        bytes: crate::kdump::notice_bytes().to_vec(),
    }
}

fn journal_waits(effects: &[Effect]) -> Vec<crate::fencing::DownRecord> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal { down: Some(d), .. } => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn to_guest(effects: &[Effect]) -> Vec<(u64, LinkMessage)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendToGuest { conn, message } => Some((*conn, message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_kdump_notice_leads_to_a_journaled_down_and_the_guests_are_told_in_that_step() {
    let mut c = core();
    link(&mut c, 7, 2);
    let both: &[(NodeId, &[(&str, NodeId)])] = &[(2, &[("erp", 1)]), (3, &[])];
    run(&mut c, (0, 500), both);
    let noticed = c.step(ms(520), kdump("127.0.0.2"));
    assert!(
        noticed.contains(&Effect::Count("kdump_accepted")),
        "{noticed:?}"
    );
    assert!(
        noticed.contains(&Effect::SendHeartbeats),
        "the probe goes out at once"
    );
    // h2 stays silent: Failed, and the notice is proof once it was silent long enough.
    let after = run(&mut c, (550, 1000), &[(3, &[])]);
    let waits = journal_waits(&after);
    assert_eq!(waits.len(), 1, "{after:?}");
    assert_eq!((waits[0].target, &waits[0].proof), (2, &Proof::KdumpNotice));
    assert!(
        !after
            .iter()
            .any(|e| matches!(e, Effect::Fence(FenceEvent::Down(_)))),
        "no DOWN before its record is on disk"
    );
    assert!(
        to_guest(&after).is_empty(),
        "nobody is told before the DOWN"
    );
    let down = c.step(
        ms(1010),
        Event::Journaled {
            down: Some(waits[0].clone()),
            result: Ok(()),
        },
    );
    let position = |want: fn(&Effect) -> bool| down.iter().position(want).unwrap();
    let (d, shared, told, vm_ha) = (
        position(|e| matches!(e, Effect::Fence(FenceEvent::Down(_)))),
        position(|e| *e == Effect::SendHeartbeats),
        position(|e| matches!(e, Effect::SendToGuest { .. })),
        position(|e| *e == Effect::HostDown(2)),
    );
    assert!(d < shared && shared < told && told < vm_ha, "{down:?}");
    let [(7, LinkMessage::HostDown { host, guests, .. })] = &to_guest(&down)[..] else {
        panic!("{down:?}");
    };
    assert_eq!((host.as_str(), guests.clone()), ("h2", vec![(1, 11)]));
    assert_eq!(c.fencing().down_records().len(), 1);
    // Unacknowledged, it is repeated by a later tick; acknowledged, no more.
    let again = c.tick(ms(1010 + 2000));
    assert_eq!(to_guest(&again).len(), 1, "{again:?}");
    let epoch = match &to_guest(&again)[0].1 {
        LinkMessage::HostDown { epoch, .. } => *epoch,
        m => panic!("{m:?}"),
    };
    c.step(ms(3100), Event::HostDownAck { conn: 7, epoch });
    assert!(to_guest(&c.tick(ms(9000))).is_empty());
}

#[test]
fn a_forged_notice_about_a_live_host_is_refuted_and_nothing_is_fenced() {
    let mut c = core();
    let both: &[(NodeId, &[(&str, NodeId)])] = &[(2, &[]), (3, &[])];
    run(&mut c, (0, 500), both);
    let noticed = c.step(ms(520), kdump("127.0.0.2"));
    assert!(noticed.iter().any(|e| matches!(
        e,
        Effect::MembershipLimited(MembershipEvent::PanicNotice { node: 2, .. })
    )));
    let after = run(&mut c, (550, 3000), both);
    assert!(
        after.iter().any(|e| matches!(
            e,
            Effect::MembershipLimited(MembershipEvent::PanicNoticeRefuted { node: 2 })
        )),
        "{after:?}"
    );
    assert!(journal_waits(&after).is_empty(), "{after:?}");
    assert!(!after
        .iter()
        .any(|e| matches!(e, Effect::RunFenceLevel { .. })));
}

#[test]
fn notices_from_no_hosts_address_malformed_or_about_itself_are_not_taken() {
    let mut c = core();
    let e = c.step(ms(10), kdump("10.9.9.9"));
    assert!(
        matches!(
            &e[..],
            [Effect::RecordLimited {
                kind: "kdump_refused",
                ..
            }]
        ),
        "{e:?}"
    );
    let own = c.step(ms(10), kdump("127.0.0.1"));
    assert_eq!(own, vec![Effect::Count("kdump_own")]);
    let bad = Event::Kdump {
        from: "127.0.0.2:4000".parse().unwrap(),
        bytes: vec![1, 2, 3],
    };
    let e = c.step(ms(10), bad);
    assert!(
        matches!(
            &e[..],
            [Effect::LogLimited {
                counter: "kdump_malformed",
                ..
            }]
        ),
        "{e:?}"
    );
}

#[test]
fn a_failing_fence_level_is_followed_by_the_next_and_only_proof_makes_down() {
    let mut c = core();
    let both: &[(NodeId, &[(&str, NodeId)])] = &[(2, &[]), (3, &[])];
    run(&mut c, (0, 500), both);
    let after = run(&mut c, (550, 1500), &[(2, &[])]);
    let levels: Vec<_> = after
        .iter()
        .filter_map(|e| match e {
            Effect::RunFenceLevel {
                target,
                level,
                devices,
            } => Some((*target, *level, devices.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(levels, vec![(3, 0, vec!["ipmi".to_string()])], "{after:?}");
    let failed = c.step(
        ms(1600),
        Event::FenceLevelDone {
            target: 3,
            level: 0,
            ok: false,
            detail: "no answer".into(),
        },
    );
    assert!(
        failed.iter().any(|e| matches!(
            e,
            Effect::Fence(FenceEvent::LevelFailed {
                target: 3,
                level: 1,
                ..
            })
        )),
        "{failed:?}"
    );
    assert!(journal_waits(&failed).is_empty());
    let next = c.tick(ms(1650));
    assert!(
        next.iter().any(|e| matches!(
            e,
            Effect::RunFenceLevel {
                target: 3,
                level: 1,
                ..
            }
        )),
        "{next:?}"
    );
    let off = c.step(
        ms(1700),
        Event::FenceLevelDone {
            target: 3,
            level: 1,
            ok: true,
            detail: "off".into(),
        },
    );
    let waits = journal_waits(&off);
    assert!(
        matches!(&waits[..], [r] if matches!(&r.proof, Proof::PowerOff { devices } if devices == &["pdu"])),
        "{off:?}"
    );
    // A failed journal write: not DOWN, an alarm.
    let failed = c.step(
        ms(1800),
        Event::Journaled {
            down: Some(waits[0].clone()),
            result: Err("Read-only file system".into()),
        },
    );
    assert!(
        failed.contains(&Effect::JournalHealth(crate::host::JournalHealth::Failing(
            "Read-only file system".into()
        )))
    );
    assert!(!failed.iter().any(|e| matches!(e, Effect::HostDown(_))));
}

fn killing(c: &mut HostCore) -> Vec<Effect> {
    link(c, 7, 2);
    run(c, (0, 500), &[(2, &[("erp", 1)]), (3, &[])]);
    c.step(
        ms(510),
        Event::KillRequest {
            conn: 7,
            request: 1,
            cluster: "erp".into(),
            node_id: 1,
        },
    )
}

#[test]
fn a_kill_request_becomes_an_order_and_its_answer_reaches_every_guest_that_asked() {
    let mut c = core();
    let asked = killing(&mut c);
    assert!(
        asked.iter().any(|e| matches!(
            e,
            Effect::Record {
                kind: "kill_requested",
                ..
            }
        )),
        "{asked:?}"
    );
    assert!(asked.contains(&Effect::SendHeartbeats));
    let (_, sections) = c.heartbeat(ms(520), 0, |_| true);
    assert_eq!(
        sections.kill_orders,
        vec![KillOrder {
            id: 101,
            target_host: 2,
            cluster: "erp".into(),
            node_id: 1
        }]
    );
    // The same guest asks again: it waits on the order in flight.
    let joined = c.step(
        ms(530),
        Event::KillRequest {
            conn: 7,
            request: 2,
            cluster: "erp".into(),
            node_id: 1,
        },
    );
    assert_eq!(joined, vec![Effect::Count("kill_requests_joined")]);
    let Event::Heartbeat {
        from,
        incarnation,
        accepted,
        mut payload,
    } = heartbeat(2, &[("erp", 1)])
    else {
        unreachable!()
    };
    edit_sections(&mut payload, |s| {
        s.kill_answers = vec![KillAnswer {
            from_host: 1,
            id: 101,
            ok: true,
            detail: "g1 destroyed".into(),
        }];
    });
    let answered = c.step(
        ms(600),
        Event::Heartbeat {
            from,
            incarnation,
            accepted,
            payload,
        },
    );
    let results: Vec<_> = to_guest(&answered)
        .into_iter()
        .map(|(conn, m)| match m {
            LinkMessage::KillResult { request, ok, .. } => (conn, request, ok),
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        results,
        vec![(7, 2, true), (7, 1, true)],
        "both requests are answered"
    );
    assert!(
        c.heartbeat(ms(610), 0, |_| true).1.kill_orders.is_empty(),
        "settled"
    );
}

#[test]
fn a_guest_of_a_slow_host_is_not_killed_while_its_host_is_judged() {
    let mut c = core();
    link(&mut c, 7, 2);
    run(&mut c, (0, 500), &[(2, &[("erp", 1)]), (3, &[])]);
    c.step(ms(505), Event::Watchdog(WatchdogVerdict::Ok));
    // h1 itself is slow, and g2 asks to kill g1 which runs on h2: allowed; a request
    // about a guest here while h1 is slow is deferred.
    c.step(
        ms(506),
        Event::Watchdog(WatchdogVerdict::Slow {
            lateness_ms: 80,
            psi_percent: 40,
        }),
    );
    link(&mut c, 8, 1);
    let e = c.step(
        ms(510),
        Event::KillRequest {
            conn: 7,
            request: 1,
            cluster: "erp".into(),
            node_id: 1,
        },
    );
    let [(
        7,
        LinkMessage::KillResult {
            ok: false,
            retry_after_ms,
            detail,
            ..
        },
    )] = &to_guest(&e)[..]
    else {
        panic!("{e:?}");
    };
    assert_eq!(*retry_after_ms, crate::host::kills::request::KILL_DEFER_MS);
    assert!(detail.contains("h1 reports itself slow"), "{detail}");
}

#[test]
fn an_order_of_another_host_destroys_a_guest_here_and_not_running_proves_only_if_nowhere() {
    let mut c = core();
    link(&mut c, 8, 1);
    run(&mut c, (0, 500), &[(2, &[("erp", 2)]), (3, &[])]);
    let Event::Heartbeat {
        from,
        incarnation,
        accepted,
        mut payload,
    } = heartbeat(2, &[("erp", 2)])
    else {
        unreachable!()
    };
    edit_sections(&mut payload, |s| {
        s.kill_orders = vec![KillOrder {
            id: 9,
            target_host: 1,
            cluster: "erp".into(),
            node_id: 1,
        }];
    });
    let e = c.step(
        ms(600),
        Event::Heartbeat {
            from,
            incarnation,
            accepted,
            payload: payload.clone(),
        },
    );
    let guest = DestroyTarget {
        cluster: "erp".into(),
        node: "g1".into(),
        domain: "vm-g1".into(),
    };
    assert!(
        e.contains(&Effect::Destroy {
            from: 2,
            order: 9,
            guest
        }),
        "{e:?}"
    );
    let again = c.step(
        ms(700),
        Event::Heartbeat {
            from,
            incarnation,
            accepted,
            payload,
        },
    );
    assert!(
        !again.iter().any(|e| matches!(e, Effect::Destroy { .. })),
        "executed once"
    );
    // Not running here, but the guest is linked right now: no proof.
    let done = c.step(
        ms(800),
        Event::Destroyed {
            from: 2,
            order: 9,
            ok: false,
            detail: "not running".into(),
            not_running: Some("vm-g1".into()),
            facts: NotRunningFacts::default(),
        },
    );
    assert!(
        done.iter().any(|e| matches!(
            e,
            Effect::Record {
                kind: "guest_destroy_failed",
                ..
            }
        )),
        "{done:?}"
    );
    let answers = c.heartbeat(ms(810), 0, |_| true).1.kill_answers;
    assert!(
        matches!(
            &answers[..],
            [KillAnswer {
                from_host: 2,
                id: 9,
                ok: false,
                ..
            }]
        ),
        "{answers:?}"
    );
}
