use proptest::prelude::*;

use super::*;
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
        down: Vec::new(),
        ..Heartbeat::default()
    }
}

/// At their caps, with the longest names a configuration allows (guest cluster 63
/// bytes, node 128), the guest-driven sections stay within GUEST_SECTIONS_MAX.
#[test]
fn guest_sections_at_their_caps_fit_their_share() {
    let mut hb = Heartbeat {
        kill_orders: (0..1000).map(|i| order(i, 63)).collect(),
        kill_answers: (0..1000).map(|i| answer(i, 10_000)).collect(),
        guests: (0..1000).map(|i| guest(i, 128)).collect(),
        ..Heartbeat::default()
    };
    let fitted = fit(&mut hb, BUDGET);
    assert!(fitted.dropped.is_empty(), "{fitted:?}");
    assert_eq!(hb.kill_orders.len(), MAX_KILL_ORDERS);
    assert_eq!(hb.kill_answers.len(), MAX_KILL_ANSWERS);
    assert_eq!(hb.guests.len(), MAX_GUESTS);
    assert!(hb.kill_answers.iter().all(|a| a.detail.len() <= MAX_DETAIL));
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
    hb.kill_orders = vec![order(1, 3)];
    let before = hb.clone();
    let fitted = fit(&mut hb, BUDGET);
    assert_eq!(hb, before);
    assert!(fitted.capped.is_empty() && fitted.dropped.is_empty());
}

/// Too many domains of the host's own: everything but the membership goes, which fits.
#[test]
fn an_oversized_heartbeat_keeps_its_membership() {
    let mut hb = membership();
    hb.domains = (0..2000)
        .map(|i| DomainPresence {
            name: format!("{i:0>60}"),
            uuid: format!("{i:0>36}"),
            state: "Running".into(),
            memory_kib: u64::MAX,
            vcpus: 64,
        })
        .collect();
    let view = hb.view.clone();
    let fitted = fit(&mut hb, BUDGET);
    assert!(fitted.size <= BUDGET);
    assert_eq!(fitted.dropped.last(), Some(&"all but the membership"));
    assert_eq!(hb.view, view);
    assert!(hb.domains.is_empty());
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
        hb.kill_orders = (0..orders as u64).map(|i| order(i, name_len)).collect();
        hb.kill_answers = (0..answers as u64).map(|i| answer(i, detail_len)).collect();
        hb.guests = (0..guests).map(|i| guest(i, name_len)).collect();
        hb.domains = (0..domains)
            .map(|i| DomainPresence {
                name: format!("vm{i}"),
                uuid: format!("{i:0>36}"),
                state: "Running".into(),
                memory_kib: 1 << 20,
                vcpus: 2,
            })
            .collect();
        let expected_view = hb.view.clone();
        let fitted = fit(&mut hb, BUDGET);
        let encoded = postcard::to_allocvec(&hb).unwrap();
        prop_assert!(encoded.len() <= BUDGET, "{} > {BUDGET}", encoded.len());
        prop_assert_eq!(encoded.len(), fitted.size);
        prop_assert_eq!(&hb.view, &expected_view);
        prop_assert!(hb.kill_orders.len() <= MAX_KILL_ORDERS);
        prop_assert!(hb.kill_answers.len() <= MAX_KILL_ANSWERS);
        prop_assert!(hb.guests.len() <= MAX_GUESTS);
    }
}
