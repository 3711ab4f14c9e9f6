use proptest::prelude::*;

use super::*;
use crate::fencing::{DownRecord, Proof};
use crate::hostlink::{DomainPresence, GuestPresence, KillAnswer, KillOrder};
use crate::membership::{HostState, PeerView};

fn order(i: u64, name_len: usize) -> KillOrder {
    KillOrder {
        id: u64::MAX - i,
        target_host: u32::MAX,
        cluster: "c".repeat(name_len),
        node_id: u32::MAX,
    }
}

fn answer(i: u64, detail_len: usize) -> KillAnswer {
    KillAnswer {
        from_host: u32::MAX,
        id: u64::MAX - i,
        ok: true,
        detail: "é".repeat(detail_len),
    }
}

fn guest(i: u32, name_len: usize) -> GuestPresence {
    GuestPresence {
        cluster: "c".repeat(name_len.min(63)),
        node_id: u32::MAX - i,
        node: "n".repeat(name_len),
        incarnation: u64::MAX,
    }
}

/// The membership part of a cluster of 64 hosts, all of them DOWN records too.
fn membership() -> Heartbeat {
    Heartbeat {
        interconnect: 1,
        quorate: true,
        votes: 64,
        config_digest: [7; 16],
        domains_version: u64::MAX,
        view: (0..64)
            .map(|n| PeerView {
                node: n,
                incarnation: u64::MAX,
                state: HostState::Up,
            })
            .collect(),
        ..Heartbeat::default()
    }
}

/// At their caps, with the longest names a configuration allows (guest cluster 63
/// bytes, node 128), the guest-driven sections stay within GUEST_SECTIONS_MAX.
#[test]
fn guest_sections_at_their_caps_fit_their_share() {
    let mut hb = Heartbeat::default();
    let mut sections = HostSections {
        kill_orders: (0..1000).map(|i| order(i, 63)).collect(),
        kill_answers: (0..1000).map(|i| answer(i, 10_000)).collect(),
        guests: (0..1000).map(|i| guest(i, 128)).collect(),
        ..HostSections::default()
    };
    let fitted = fit(&mut hb, &mut sections, BUDGET);
    assert!(fitted.dropped.is_empty(), "{fitted:?}");
    let (sent, issues) = HostSections::read(&hb);
    assert!(issues.is_empty());
    assert_eq!(sent, sections);
    assert_eq!(sent.kill_orders.len(), MAX_KILL_ORDERS);
    assert_eq!(sent.kill_answers.len(), MAX_KILL_ANSWERS);
    assert_eq!(sent.guests.len(), MAX_GUESTS);
    assert!(sent
        .kill_answers
        .iter()
        .all(|a| a.detail.len() <= MAX_DETAIL));
    assert!(
        fitted.size <= GUEST_SECTIONS_MAX,
        "{} bytes at the caps",
        fitted.size
    );
    const {
        assert!(
            BUDGET - GUEST_SECTIONS_MAX >= 18_000,
            "room left for the host's own sections"
        )
    };
}

#[test]
fn a_heartbeat_that_fits_is_left_alone() {
    let mut hb = membership();
    let mut sections = HostSections {
        kill_orders: vec![order(1, 3)],
        ..HostSections::default()
    };
    let before = sections.clone();
    let fitted = fit(&mut hb, &mut sections, BUDGET);
    assert_eq!(sections, before);
    assert_eq!(HostSections::read(&hb), (before, Vec::new()));
    assert!(fitted.capped.is_empty() && fitted.dropped.is_empty());
}

/// Too many domains of the host's own: everything but the membership header and the
/// DOWN records goes, which fits.
#[test]
fn an_oversized_heartbeat_keeps_its_membership() {
    let mut hb = membership();
    let down = DownRecord {
        target: 3,
        incarnation: 9,
        proof: Proof::KdumpNotice,
        by: 1,
    };
    let mut sections = HostSections {
        down: vec![down.clone()],
        kill_orders: vec![order(1, 3)],
        ..HostSections::default()
    };
    sections.domains = (0..2000)
        .map(|i| DomainPresence {
            name: format!("{i:0>60}"),
            uuid: format!("{i:0>36}"),
            state: "Running".into(),
            memory_kib: u64::MAX,
            vcpus: 64,
        })
        .collect();
    let view = hb.view.clone();
    let fitted = fit(&mut hb, &mut sections, BUDGET);
    assert!(fitted.size <= BUDGET);
    assert_eq!(fitted.dropped.last(), Some(&"all but the membership"));
    assert_eq!(hb.view, view);
    let (sent, _) = HostSections::read(&hb);
    assert!(sent.domains.is_empty() && sent.kill_orders.is_empty());
    assert_eq!(sent.down, vec![down]);
}

proptest! {
    /// Whatever guests make of the sections they drive, and however long the names,
    /// the heartbeat fits its frame and its membership part is untouched.
    #[test]
    fn whatever_guests_do_the_heartbeat_fits(
        orders in 0usize..3000,
        answers in 0usize..3000,
        guests in 0u32..3000,
        name_len in 1usize..200,
        detail_len in 0usize..5000,
        domains in 0usize..400,
    ) {
        let mut hb = membership();
        let mut sections = HostSections {
            kill_orders: (0..orders as u64).map(|i| order(i, name_len)).collect(),
            kill_answers: (0..answers as u64).map(|i| answer(i, detail_len)).collect(),
            guests: (0..guests).map(|i| guest(i, name_len)).collect(),
            domains: (0..domains)
                .map(|i| DomainPresence {
                    name: format!("vm{i}"),
                    uuid: format!("{i:0>36}"),
                    state: "Running".into(),
                    memory_kib: 1 << 20,
                    vcpus: 2,
                })
                .collect(),
            ..HostSections::default()
        };
        let expected_view = hb.view.clone();
        let fitted = fit(&mut hb, &mut sections, BUDGET);
        let encoded = postcard::to_allocvec(&hb).unwrap();
        prop_assert!(encoded.len() <= BUDGET, "{} > {BUDGET}", encoded.len());
        prop_assert_eq!(encoded.len(), fitted.size);
        let decoded: Heartbeat = postcard::from_bytes(&encoded).unwrap();
        prop_assert_eq!(&decoded.view, &expected_view);
        let (sent, issues) = HostSections::read(&decoded);
        prop_assert!(issues.is_empty());
        prop_assert!(sent.kill_orders.len() <= MAX_KILL_ORDERS);
        prop_assert!(sent.kill_answers.len() <= MAX_KILL_ANSWERS);
        prop_assert!(sent.guests.len() <= MAX_GUESTS);
    }
}
