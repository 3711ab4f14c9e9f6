//! Panic notices on virtual time: probed, outvoted by life, taken only from silence.

use super::*;

fn noticed(m: &Membership, now: Duration, node: NodeId) -> bool {
    m.peers(now)
        .iter()
        .any(|p| p.node == node && p.panic_noticed)
}

#[test]
fn a_forged_notice_about_a_live_host_is_outvoted_by_its_heartbeats() {
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    for _ in 0..5 {
        let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
        sim.perform(0, actions);
        sim.run_for(300 * MS);
    }
    sim.run_for(2000 * MS);
    assert!(
        !ever_failed(&sim, 0, 3),
        "never Failed for a notice it answered"
    );
    assert_eq!(sim.state(0, 2), HostState::Up);
    assert!(!noticed(&sim.nodes[0], sim.now, 3));
    assert!(sim
        .events
        .iter()
        .any(|(i, _, e)| *i == 0 && matches!(e, MembershipEvent::PanicNoticeRefuted { node: 3 })));
}

#[test]
fn a_notice_from_a_dead_host_counts_once_the_probe_goes_unanswered() {
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    sim.powered[2] = false;
    let t0 = sim.now;
    let actions = sim.nodes[0].on_kdump_notice(t0, 3);
    assert!(actions.contains(&Action::SendHeartbeats), "probed at once");
    sim.perform(0, actions);
    sim.run_for(DEFAULT_PANIC_PROBE - 10 * MS);
    assert_eq!(sim.state(0, 2), HostState::Up, "not before the bound");
    sim.run_for(20 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Panic));
    assert!(noticed(&sim.nodes[0], sim.now, 3));
    assert!(sim.now - t0 <= DEFAULT_PANIC_PROBE + 10 * MS);
    // Long before the dead time, and it stays so.
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Panic));
    assert!(noticed(&sim.nodes[0], sim.now, 3));
}

#[test]
fn a_notice_about_a_silent_failed_host_counts_after_the_bound_and_keeps_the_reason() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.powered[2] = false;
    sim.run_for(1500 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
    sim.perform(0, actions);
    assert!(!noticed(&sim.nodes[0], sim.now, 3));
    sim.run_for(DEFAULT_PANIC_PROBE + 10 * MS);
    assert!(noticed(&sim.nodes[0], sim.now, 3));
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
}

#[test]
fn a_host_heard_after_its_notice_counted_is_no_longer_noticed() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.frozen[2] = true;
    let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
    sim.perform(0, actions);
    sim.run_for(300 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Panic));
    assert!(noticed(&sim.nodes[0], sim.now, 3));
    sim.frozen[2] = false;
    sim.run_for(300 * MS);
    assert!(
        !noticed(&sim.nodes[0], sim.now, 3),
        "life outvotes the notice"
    );
}

#[test]
fn forged_notices_probe_at_most_once_per_bound() {
    let mut m = Membership::new(cfg(1, 3, 1), 7, Duration::ZERO);
    let mut probes = 0;
    // A live host's heartbeats name the receiver's current incarnation.
    let hb = Heartbeat {
        config_digest: [7; 16],
        view: vec![PeerView {
            node: 1,
            incarnation: 7,
            state: HostState::Up,
        }],
        ..Heartbeat::default()
    };
    let mut seq = 0;
    let mut window = ReplayWindow::default();
    for ms in 0..1500u32 {
        let now = ms * MS;
        let mut actions = m.on_kdump_notice(now, 3);
        // The live host answers every probe a millisecond later.
        seq += 1;
        let accepted = window.accept(99, seq).unwrap();
        actions.extend(m.on_heartbeat(now + MS, 3, 99, accepted, &hb));
        if ms % 10 == 0 {
            actions.extend(m.tick(now));
        }
        probes += actions
            .iter()
            .filter(|a| **a == Action::SendHeartbeats)
            .count();
    }
    // Regular heartbeats: 1500 ms / 200 ms; probes: at most one per 150 ms.
    assert!(probes <= 8 + 10 + 2, "{probes} heartbeat rounds");
    assert!(!noticed(&m, 1500 * MS, 3));
}

#[test]
fn a_probed_host_answers_at_once_and_others_carry_the_probe() {
    let mut m = Membership::new(cfg(1, 3, 1), 7, Duration::ZERO);
    let _ = m.on_kdump_notice(10 * MS, 3);
    assert_eq!(m.heartbeat(0).probe, vec![3]);
    let mut probed = Membership::new(cfg(3, 3, 1), 9, Duration::ZERO);
    let mut other = Membership::new(cfg(2, 3, 1), 8, Duration::ZERO);
    // m has heard both, so its heartbeats name their incarnations.
    let _ = m.on_heartbeat(5 * MS, 3, 9, Accepted::First, &Heartbeat::default());
    let _ = m.on_heartbeat(5 * MS, 2, 8, Accepted::First, &Heartbeat::default());
    let hb = m.heartbeat(0);
    let actions = probed.on_heartbeat(11 * MS, 1, 7, Accepted::First, &hb);
    assert!(actions.contains(&Action::SendHeartbeats));
    let actions = other.on_heartbeat(11 * MS, 1, 7, Accepted::First, &hb);
    assert!(!actions.contains(&Action::SendHeartbeats));
}

#[test]
fn a_notice_is_refuted_by_a_later_incarnation_even_unconfirmed() {
    // h3 panics and reboots at once; h1 takes the notice, then hears the new life only
    // unconfirmed (h3 does not hear h1: a one-way cut). The notice proves the old life
    // ended, nothing of the new one: it must not count any more.
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    sim.powered[2] = false;
    let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
    sim.perform(0, actions);
    sim.run_for(DEFAULT_PANIC_PROBE + 20 * MS);
    assert!(noticed(&sim.nodes[0], sim.now, 3));
    for ic in 0..2 {
        sim.cut.insert((0, 2, ic));
    }
    sim.nodes[2] = Membership::new(cfg(3, 3, 2), 5000, sim.now);
    sim.seq[2] = 0;
    sim.powered[2] = true;
    sim.run_for(500 * MS);
    assert_eq!(sim.nodes[0].latest_incarnation(3), Some(5000));
    assert!(
        !noticed(&sim.nodes[0], sim.now, 3),
        "refuted by the new life"
    );
    assert!(sim.nodes[0].heard_lately(3, sim.now));
}

#[test]
fn a_late_notice_of_an_earlier_life_does_not_count_against_the_new_one() {
    // h3 panics and reboots at once (in this test, within a few heartbeats); h1 hears its
    // new life, then the crash kernel's notice of the earlier life arrives, and h3's
    // heartbeats stop reaching h1 (a one-way cut). The notice must not make the new
    // life Failed(panic): it is refuted at once.
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    sim.nodes[2] = Membership::new(cfg(3, 3, 2), 5000, sim.now);
    sim.seq[2] = 0;
    sim.run_for(300 * MS);
    assert_eq!(sim.nodes[0].latest_incarnation(3), Some(5000));
    for ic in 0..2 {
        sim.cut.insert((2, 0, ic));
    }
    let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
    assert!(
        actions.contains(&Action::Event(MembershipEvent::PanicNoticeRefuted {
            node: 3
        })),
        "{actions:?}"
    );
    sim.perform(0, actions);
    sim.run_for(DEFAULT_PANIC_PROBE + 100 * MS);
    assert!(!noticed(&sim.nodes[0], sim.now, 3), "a late notice counted");
    assert!(
        !ever_failed(&sim, 0, 3),
        "the new life was failed by the notice"
    );
}

#[test]
fn a_notice_after_the_grace_of_a_new_life_is_judged() {
    // The same host, its new life heard for longer than the grace: a notice now may be
    // about that life, and with h3 silent it counts.
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    sim.nodes[2] = Membership::new(cfg(3, 3, 2), 5000, sim.now);
    sim.seq[2] = 0;
    sim.run_for(NEW_LIFE_GRACE + 100 * MS);
    sim.powered[2] = false;
    let actions = sim.nodes[0].on_kdump_notice(sim.now, 3);
    sim.perform(0, actions);
    sim.run_for(DEFAULT_PANIC_PROBE + 20 * MS);
    assert!(noticed(&sim.nodes[0], sim.now, 3));
}
