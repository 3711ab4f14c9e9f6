//! Freshness across restarts: recorded heartbeats replayed to a receiver that started
//! (or rejoined) since they were made prove nothing.

use std::time::Duration;

use super::tests::{cfg, Sim, MS};
use super::*;
use crate::wire::ReplayWindow;

/// Host 1's agent restarts: it has a new incarnation and empty replay windows.
fn restart_first(sim: &mut Sim, incarnation: u64) {
    sim.nodes[0] = Membership::new(cfg(1, 3, 1), incarnation, sim.now);
    sim.seq[0] = 0;
    sim.windows.retain(|(receiver, _), _| *receiver != 0);
}

fn became(sim: &Sim, observer: usize, node: NodeId, to: HostState) -> Option<Duration> {
    sim.events
        .iter()
        .find(|(i, _, e)| {
            *i == observer
                && matches!(e, MembershipEvent::HostState { node: n, to: t, .. } if *n == node && *t == to)
        })
        .map(|(_, t, _)| *t)
}

/// h3 loses power; h1's agent restarts; an attacker replays h3's recorded heartbeats
/// (authentic frames, new to h1's empty replay window) to h1 every interval. h3 is never
/// taken for alive; h2, alive, is Up as fast as before.
#[test]
fn recorded_heartbeats_of_a_dead_host_do_not_keep_it_alive_after_a_restart() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    assert!(sim.all_up());
    let recorded: Vec<Heartbeat> = (0..5).map(|_| sim.nodes[2].heartbeat(0)).collect();
    let recorded_incarnation = sim.nodes[2].incarnation();
    sim.powered[2] = false;
    sim.run_for(300 * MS);
    restart_first(&mut sim, 5000);
    sim.events.clear();
    let restarted_at = sim.now;
    let mut replay = ReplayWindow::default();
    let mut sequence = 1_000;
    for round in 0..20 {
        sequence += 1;
        let accepted = replay.accept(recorded_incarnation, sequence).unwrap();
        let hb = &recorded[round % recorded.len()];
        let actions = sim.nodes[0].on_heartbeat(sim.now, 3, recorded_incarnation, accepted, hb);
        sim.perform(0, actions);
        assert!(
            !matches!(
                sim.state(0, 2),
                HostState::Joining | HostState::Up | HostState::Suspect
            ),
            "round {round}: a recording counts h3 {:?}",
            sim.state(0, 2)
        );
        sim.run_for(200 * MS);
    }
    // Heard, though never confirmed: neither counted nor fenced by h1 while it lasts.
    assert_eq!(sim.state(0, 2), HostState::Unknown);
    assert_eq!(became(&sim, 0, 3, HostState::Joining), None);
    sim.run_for(1100 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    // h2 confirmed itself one heartbeat after hearing h1's new incarnation.
    assert_eq!(sim.state(0, 1), HostState::Up);
    let up = became(&sim, 0, 2, HostState::Up).unwrap() - restarted_at;
    assert!(up <= 1000 * MS, "h2 Up {up:?} after the restart");
    assert!(sim.nodes[0].quorum().quorate);
}

/// A freshly started host counts its peers as soon as they name its incarnation back:
/// one heartbeat interval more than the join itself.
#[test]
fn a_restarted_host_and_its_peers_confirm_each_other_within_a_round() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    restart_first(&mut sim, 7000);
    sim.events.clear();
    let t0 = sim.now;
    sim.run_for(1500 * MS);
    assert!(sim.all_up());
    for node in [2, 3] {
        let joined = became(&sim, 0, node, HostState::Up).unwrap() - t0;
        // rejoin_heartbeats (3) at 200 ms, plus one round to confirm.
        assert!(joined <= 1000 * MS, "h1 saw h{node} Up after {joined:?}");
    }
    // Its peers never lost it: a new incarnation of an Up host stays Up.
    for observer in [1, 2] {
        assert_eq!(became(&sim, observer, 1, HostState::Joining), None);
    }
}

/// A heartbeat that does not name this host's current incarnation only notes its
/// sender's: this host's next heartbeat names it back, so the sender can confirm.
#[test]
fn an_unconfirmed_heartbeat_is_named_back_but_counts_for_nothing() {
    let mut m = Membership::new(cfg(1, 3, 1), 9, Duration::ZERO);
    let mut stale = Membership::new(cfg(2, 3, 1), 4, Duration::ZERO).heartbeat(0);
    stale.config_digest = [7; 16];
    assert!(!m.is_fresh(&stale));
    let actions = m.on_heartbeat(10 * MS, 2, 4, Accepted::First, &stale);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(m.state_of(2), Some(HostState::Unknown));
    let named = |m: &Membership| {
        m.heartbeat(0)
            .view
            .iter()
            .find(|v| v.node == 2)
            .map(|v| v.incarnation)
    };
    assert_eq!(named(&m), Some(4));
    stale.view = vec![PeerView {
        node: 1,
        incarnation: 9,
        state: HostState::Unknown,
    }];
    assert!(m.is_fresh(&stale));
    m.on_heartbeat(20 * MS, 2, 4, Accepted::Same, &stale);
    assert_eq!(m.state_of(2), Some(HostState::Joining));
    // Failed with incarnation 4, it is named with 4 even when a newer one is heard
    // unconfirmed: a peer that rejoined is not told again that it failed.
    m.tick(2000 * MS);
    assert!(matches!(m.state_of(2), Some(HostState::Failed(_))));
    let mut newer = stale.clone();
    newer.view.clear();
    m.on_heartbeat(
        2010 * MS,
        2,
        6,
        Accepted::NewIncarnation { previous: 4 },
        &newer,
    );
    assert_eq!(named(&m), Some(4));
}
