//! Tests of the links and the host-down notices.

use super::*;
use crate::fencing::Proof;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn guest(cluster: &str, node_id: NodeId) -> Linked {
    Linked {
        cluster: cluster.into(),
        node: format!("g{node_id}"),
        node_id,
        incarnation: 10 + u64::from(node_id),
        domain: None,
    }
}

fn presence(cluster: &str, node_id: NodeId) -> GuestPresence {
    GuestPresence {
        cluster: cluster.into(),
        node_id,
        node: format!("g{node_id}"),
        incarnation: 10 + u64::from(node_id),
    }
}

fn down(target: NodeId) -> DownRecord {
    DownRecord {
        target,
        incarnation: 5,
        proof: Proof::KdumpNotice,
        by: 2,
    }
}

fn due(l: &mut Links, ms: u64, downs: &[DownRecord]) -> Vec<Outgoing> {
    l.due(
        Duration::from_millis(ms),
        downs,
        |n| format!("h{n}"),
        |_| "kdump".into(),
    )
}

#[test]
fn a_down_host_is_notified_to_partners_only_repeated_until_acknowledged() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    l.register(8, guest("crm", 5));
    l.on_heartbeat((1, 5), &[presence("erp", 1), presence("web", 1)]);
    assert!(due(&mut l, 0, &[]).is_empty(), "nothing is down");
    let first = due(&mut l, 10, &[down(1)]);
    assert_eq!(
        first,
        vec![Outgoing {
            conn: 7,
            message: LinkMessage::HostDown {
                epoch: 1,
                host: "h1".into(),
                proof: "kdump".into(),
                guests: vec![(1, 11)],
            },
            first: true,
        }],
        "only the guest with a partner on the down host"
    );
    assert!(
        due(&mut l, 100, &[down(1)]).is_empty(),
        "not before the retry time"
    );
    let again = due(&mut l, 600, &[down(1)]);
    assert_eq!(again.len(), 1);
    assert!(!again[0].first);
    assert!(l.on_ack(7, 1));
    assert!(!l.on_ack(7, 1), "an ack counts once");
    assert!(due(&mut l, 2000, &[down(1)]).is_empty(), "acknowledged");
    assert_eq!(l.unacknowledged(), 0);
}

#[test]
fn a_reconnected_guest_is_notified_again_and_a_returned_host_is_forgotten() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    l.on_heartbeat((1, 5), &[presence("erp", 1)]);
    assert_eq!(due(&mut l, 0, &[down(1)]).len(), 1);
    assert_eq!(l.closed(7, MS(5)), Some(guest("erp", 2)));
    l.register(9, guest("erp", 2));
    let renewed = due(&mut l, 10, &[down(1)]);
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].conn, 9);
    assert!(renewed[0].first);
    assert!(due(&mut l, 5000, &[]).is_empty());
    assert_eq!(l.unacknowledged(), 0, "the host came back: nothing is owed");
}

#[test]
fn a_guest_whose_domain_left_this_host_stops_lingering() {
    let mut l = Links::new(9, Duration::from_millis(500));
    let mut g = guest("erp", 2);
    g.domain = Some("vm2".into());
    l.register(1, g);
    l.closed(1, MS(1000));
    assert_eq!(
        l.presence(MS(2000), |d| d == "vm2"),
        vec![presence("erp", 2)]
    );
    assert!(
        l.presence(MS(2000), |_| false).is_empty(),
        "moved to another host (or stopped): not reported here any more"
    );
}

#[test]
fn presence_lists_local_guests_once() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(1, guest("erp", 2));
    l.register(2, guest("erp", 2));
    l.register(3, guest("crm", 1));
    let p = l.presence(MS(0), |_| true);
    assert_eq!(p, vec![presence("crm", 1), presence("erp", 2)]);
}

#[test]
fn a_guest_whose_link_closed_is_still_reported_for_a_while() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(1, guest("erp", 2));
    l.closed(1, MS(1000));
    assert_eq!(l.presence(MS(2000), |_| true), vec![presence("erp", 2)]);
    assert!(l.presence(MS(1000) + LINGER, |_| true).is_empty());
    l.register(2, guest("erp", 2));
    l.closed(2, MS(40_000));
    l.register(3, guest("erp", 2));
    assert_eq!(
        l.presence(MS(200_000), |_| true),
        vec![presence("erp", 2)],
        "linked again"
    );
}

#[test]
fn a_guest_linked_elsewhere_now_did_not_die_with_its_old_host() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 1));
    // Host 1 last reported erp node 2; host 3 reports it now (it moved).
    l.on_heartbeat((1, 5), &[presence("erp", 2)]);
    l.on_heartbeat((3, 1), &[presence("erp", 2)]);
    assert!(due(&mut l, 0, &[down(1)]).is_empty());
    l.on_heartbeat((3, 1), &[]);
    assert_eq!(due(&mut l, 10, &[down(1)]).len(), 1);
}

#[test]
fn guests_are_located_where_they_were_last_linked() {
    let mut l = Links::new(1, Duration::from_millis(500));
    l.register(
        4,
        Linked {
            cluster: "erp".into(),
            node: "g2".into(),
            node_id: 2,
            incarnation: 1,
            domain: None,
        },
    );
    l.on_heartbeat(
        (3, 1),
        &[GuestPresence {
            cluster: "erp".into(),
            node_id: 1,
            node: "g1".into(),
            incarnation: 1,
        }],
    );
    assert_eq!(l.locate("erp", 2), Some(1));
    assert_eq!(l.locate("erp", 1), Some(3));
    assert_eq!(l.locate("crm", 1), None);
    l.closed(4, Duration::ZERO);
    assert!(
        l.known_here("erp", 2).is_some(),
        "kept after the link closed"
    );
    assert_eq!(l.locate("erp", 2), Some(1));
}

fn at(p: GuestPresence, incarnation: u64) -> GuestPresence {
    GuestPresence { incarnation, ..p }
}

fn named(out: &[Outgoing]) -> Vec<(NodeId, u64)> {
    match out {
        [Outgoing {
            message: LinkMessage::HostDown { guests, .. },
            ..
        }] => guests.clone(),
        other => panic!("one notice expected, got {other:?}"),
    }
}

#[test]
fn the_guests_of_a_later_life_of_a_down_host_did_not_die_with_the_record_s_life() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    // Host 1 in life 5 (the record's) runs erp node 1; it boots (life 8): node 1 starts
    // again under a new incarnation and node 3 starts there.
    l.on_heartbeat((1, 5), &[presence("erp", 1)]);
    l.on_heartbeat((1, 8), &[at(presence("erp", 1), 40), presence("erp", 3)]);
    assert_eq!(
        named(&due(&mut l, 0, &[down(1)])),
        vec![(1, 11)],
        "only what died with life 5, under the incarnation it ran with there"
    );
}

#[test]
fn guests_that_run_on_in_a_later_life_are_not_named() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    // Host 1's agent restarted (life 6): its guests run on under the same incarnations.
    l.on_heartbeat((1, 5), &[presence("erp", 1), presence("erp", 3)]);
    l.on_heartbeat((1, 6), &[presence("erp", 3)]);
    assert_eq!(named(&due(&mut l, 0, &[down(1)])), vec![(1, 11)]);
    let mut l2 = Links::new(9, Duration::from_millis(500));
    l2.register(7, guest("erp", 2));
    l2.on_heartbeat((1, 5), &[presence("erp", 1), presence("erp", 3)]);
    l2.on_heartbeat((1, 6), &[presence("erp", 1), presence("erp", 3)]);
    assert!(
        due(&mut l2, 0, &[down(1)]).is_empty(),
        "every guest of life 5 runs on in life 6"
    );
}

#[test]
fn a_record_of_a_life_never_heard_names_only_an_earlier_life_s_guests() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    l.on_heartbeat((1, 8), &[presence("erp", 1)]);
    assert!(
        due(&mut l, 0, &[down(1)]).is_empty(),
        "life 5 was never heard here: life 8's guests are no partners of its record"
    );
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    l.on_heartbeat((1, 3), &[presence("erp", 1)]);
    assert_eq!(
        named(&due(&mut l, 0, &[down(1)])),
        vec![(1, 11)],
        "the latest life heard before the record's"
    );
}

#[test]
fn only_the_latest_lives_are_kept() {
    let mut l = Links::new(9, Duration::from_millis(500));
    l.register(7, guest("erp", 2));
    l.on_heartbeat((1, 5), &[presence("erp", 1)]);
    for life in 6..6 + LIVES_KEPT as u64 {
        l.on_heartbeat((1, life), &[]);
    }
    assert!(
        due(&mut l, 0, &[down(1)]).is_empty(),
        "life 5's report was dropped"
    );
}
