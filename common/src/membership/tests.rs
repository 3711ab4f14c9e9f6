//! Membership on virtual time: a small in-memory cluster with controllable faults.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;
use crate::quorum::QuorumRules;
use crate::wire::ReplayWindow;

mod leave;
mod notice;

pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) fn cfg(me: NodeId, n: u32, interconnects: usize) -> MembershipConfig {
    MembershipConfig {
        me,
        hosts: (1..=n).map(|i| (i, format!("h{i}"), 1)).collect(),
        interconnects,
        interval: 200 * MS,
        suspect_after: 500 * MS,
        dead_after: 1000 * MS,
        hung_limit: 1000 * MS,
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: n,
            two_node: n == 2,
            wait_for_all: n == 2,
        },
        digest: [7; 16],
    }
}

/// Index i holds node id i+1.
pub(super) struct Sim {
    pub(super) now: Duration,
    pub(super) nodes: Vec<Membership>,
    pub(super) powered: Vec<bool>,
    frozen: Vec<bool>,
    /// (from index, to index, interconnect) pairs that do not deliver.
    cut: HashSet<(usize, usize, usize)>,
    /// (receiver, sender) → the receiver's replay window for the sender.
    pub(super) windows: HashMap<(usize, usize), ReplayWindow>,
    pub(super) seq: Vec<u64>,
    pub(super) events: Vec<(usize, Duration, MembershipEvent)>,
    hung: Vec<Option<u32>>,
    interconnects: usize,
}

impl Sim {
    pub(super) fn new(n: u32, interconnects: usize) -> Sim {
        let nodes = (1..=n)
            .map(|i| Membership::new(cfg(i, n, interconnects), 1000 + i as u64, Duration::ZERO))
            .collect();
        Sim {
            now: Duration::ZERO,
            nodes,
            powered: vec![true; n as usize],
            frozen: vec![false; n as usize],
            cut: HashSet::new(),
            windows: HashMap::new(),
            seq: vec![0; n as usize],
            events: Vec::new(),
            hung: vec![None; n as usize],
            interconnects,
        }
    }

    fn runs(&self, i: usize) -> bool {
        self.powered[i] && !self.frozen[i]
    }

    pub(super) fn perform(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Event(e) => self.events.push((i, self.now, e)),
                Action::SendHeartbeats => self.send_from(i),
                Action::Rejoin => {
                    let inc = self.nodes[i].incarnation() + 100;
                    self.seq[i] = 0;
                    let more = self.nodes[i].rejoin(self.now, inc);
                    self.perform(i, more);
                }
            }
        }
    }

    fn send_from(&mut self, i: usize) {
        if let Some(for_ms) = self.hung[i] {
            self.nodes[i].set_watchdog(WatchdogVerdict::Hung { for_ms });
        }
        for ic in 0..self.interconnects {
            let hb = self.nodes[i].heartbeat(ic);
            for j in 0..self.nodes.len() {
                if j == i || !self.runs(j) || self.cut.contains(&(i, j, ic)) {
                    continue;
                }
                self.seq[i] += 1;
                let inc = self.nodes[i].incarnation();
                let accepted = self
                    .windows
                    .entry((j, i))
                    .or_default()
                    .accept(inc, self.seq[i])
                    .unwrap();
                let actions =
                    self.nodes[j].on_heartbeat(self.now, i as u32 + 1, inc, accepted, &hb);
                self.perform(j, actions);
            }
        }
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += 10 * MS;
            for i in 0..self.nodes.len() {
                if self.runs(i) {
                    let actions = self.nodes[i].tick(self.now);
                    self.perform(i, actions);
                }
            }
        }
    }

    pub(super) fn state(&self, observer: usize, node: usize) -> HostState {
        self.nodes[observer].state_of(node as u32 + 1).unwrap()
    }

    fn first_event_time(
        &self,
        observer: usize,
        pred: impl Fn(&MembershipEvent) -> bool,
    ) -> Option<Duration> {
        self.events
            .iter()
            .find(|(i, _, e)| *i == observer && pred(e))
            .map(|(_, t, _)| *t)
    }

    pub(super) fn all_up(&self) -> bool {
        (0..self.nodes.len())
            .all(|i| (0..self.nodes.len()).all(|j| i == j || self.state(i, j) == HostState::Up))
    }
}

/// Whether `observer` ever saw `node` become Failed, for whatever reason.
fn ever_failed(sim: &Sim, observer: usize, node: NodeId) -> bool {
    sim.events.iter().any(|(i, _, e)| {
        *i == observer
            && matches!(
                e,
                MembershipEvent::HostState {
                    node: n,
                    to: HostState::Failed(_),
                    ..
                } if *n == node
            )
    })
}

#[test]
fn cluster_forms_and_is_quorate() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    assert!(sim.all_up());
    assert!(sim.nodes.iter().all(|n| n.quorum().quorate));
    assert_eq!(sim.nodes[0].quorum().votes, 3);
}

#[test]
fn power_loss_is_detected_within_dead_time() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    let t0 = sim.now;
    sim.powered[2] = false;
    sim.run_for(2000 * MS);
    for obs in 0..2 {
        assert_eq!(sim.state(obs, 2), HostState::Failed(FailReason::Silent));
        let suspect = sim
            .first_event_time(obs, |e| {
                matches!(
                    e,
                    MembershipEvent::HostState {
                        node: 3,
                        to: HostState::Suspect,
                        ..
                    }
                )
            })
            .unwrap();
        let failed = sim
            .first_event_time(obs, |e| {
                matches!(
                    e,
                    MembershipEvent::HostState {
                        node: 3,
                        to: HostState::Failed(_),
                        ..
                    }
                )
            })
            .unwrap();
        assert!(suspect < failed);
        let detect = failed - t0;
        assert!(
            detect >= 800 * MS && detect <= 1050 * MS,
            "detected after {detect:?}"
        );
        assert!(sim.nodes[obs].quorum().quorate);
        assert_eq!(sim.nodes[obs].quorum().votes, 2);
    }
}

#[test]
fn a_relaxed_peer_is_suspect_but_not_failed_until_the_relaxation_ends() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    let until = sim.now + 3000 * MS;
    sim.nodes[0].relax(3, Some(until));
    // Paused for 2 s (a migration's last round): heard again before the end.
    sim.frozen[2] = true;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Suspect);
    assert_eq!(sim.state(1, 2), HostState::Failed(FailReason::Silent));
    sim.frozen[2] = false;
    sim.run_for(500 * MS);
    assert_eq!(sim.state(0, 2), HostState::Up, "back without ever failing");
    // A silence that outlasts the relaxation is judged as usual.
    sim.nodes[0].relax(3, Some(sim.now + 500 * MS));
    sim.powered[2] = false;
    sim.run_for(400 * MS);
    assert_ne!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    sim.run_for(1000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
}

#[test]
fn panic_notice_fails_at_once() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    let actions = sim.nodes[0].on_panic_notice(sim.now, 3);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(MembershipEvent::HostState {
            node: 3,
            to: HostState::Failed(FailReason::Panic),
            ..
        })
    )));
    assert!(sim.nodes[0]
        .peers(sim.now)
        .iter()
        .any(|p| p.node == 3 && p.panic_noticed));
}

#[test]
fn one_link_cut_is_a_link_fault_not_a_host_fault() {
    let mut sim = Sim::new(3, 2);
    sim.run_for(1000 * MS);
    for j in [0, 1] {
        sim.cut.insert((2, j, 1));
        sim.cut.insert((j, 2, 1));
    }
    sim.run_for(3000 * MS);
    assert!(sim.all_up(), "hosts stay Up with one interconnect left");
    let status = sim.nodes[0].peers(sim.now);
    let h3 = status.iter().find(|p| p.node == 3).unwrap();
    assert_eq!(h3.links, vec![LinkState::Up, LinkState::Down]);
    assert!(!sim.events.iter().any(|(_, _, e)| matches!(
        e,
        MembershipEvent::HostState {
            to: HostState::Suspect,
            ..
        }
    )));
}

#[test]
fn isolated_host_loses_quorum_and_rejoins_after_heal() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    let inc_before = sim.nodes[2].incarnation();
    for j in [0, 1] {
        sim.cut.insert((2, j, 0));
        sim.cut.insert((j, 2, 0));
    }
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    assert_eq!(sim.state(2, 0), HostState::Failed(FailReason::Silent));
    assert!(sim.nodes[0].quorum().quorate);
    assert!(
        !sim.nodes[2].quorum().quorate,
        "the isolated host knows it lost quorum"
    );
    sim.cut.clear();
    sim.run_for(2000 * MS);
    assert!(sim.all_up(), "after the heal the isolated host rejoined");
    assert_ne!(
        sim.nodes[2].incarnation(),
        inc_before,
        "it rejoined with a new incarnation"
    );
    assert!(sim
        .events
        .iter()
        .any(|(i, _, e)| *i == 2 && matches!(e, MembershipEvent::Expelled { .. })));
}

#[test]
fn thawed_host_must_rejoin_and_is_not_silently_up() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.frozen[2] = true;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    sim.frozen[2] = false;
    // The thawed host's first heartbeats carry its old incarnation.
    let actions_before = sim.events.len();
    sim.run_for(100 * MS);
    let went_up_directly = sim.events[actions_before..].iter().any(|(i, _, e)| {
        *i == 0
            && matches!(
                e,
                MembershipEvent::HostState {
                    node: 3,
                    from: HostState::Failed(_),
                    to: HostState::Up
                }
            )
    });
    assert!(!went_up_directly);
    sim.run_for(2000 * MS);
    assert!(sim.all_up());
    let path: Vec<HostState> = sim
        .events
        .iter()
        .filter_map(|(i, _, e)| match e {
            MembershipEvent::HostState { node: 3, to, .. } if *i == 0 => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(
        path,
        vec![
            HostState::Joining,
            HostState::Up,
            HostState::Suspect,
            HostState::Failed(FailReason::Silent),
            HostState::Joining,
            HostState::Up
        ]
    );
}

#[test]
fn failed_host_heard_then_silent_again_is_no_longer_must_rejoin() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    // h3 cut off both ways until the others fail it.
    for j in 0..2 {
        sim.cut.insert((2, j, 0));
        sim.cut.insert((j, 2, 0));
    }
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    // Its heartbeats get through again, but it still hears nobody (so it is never told
    // to rejoin): heard alive while Failed. Then it dies.
    for j in 0..2 {
        sim.cut.remove(&(2, j, 0));
    }
    sim.run_for(500 * MS);
    let peer = |sim: &Sim| {
        sim.nodes[0]
            .peers(sim.now)
            .into_iter()
            .find(|p| p.node == 3)
            .unwrap()
    };
    assert!(peer(&sim).must_rejoin, "heard alive while Failed");
    sim.powered[2] = false;
    sim.run_for(800 * MS);
    assert!(peer(&sim).must_rejoin, "not yet silent for the dead time");
    sim.run_for(400 * MS);
    let p = peer(&sim);
    assert!(!p.must_rejoin, "silent for the dead time again: {p:?}");
    assert_eq!(p.state, HostState::Failed(FailReason::Silent));
}

#[test]
fn agent_restart_shows_new_incarnation() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.nodes[1] = Membership::new(cfg(2, 3, 1), 5000, sim.now);
    sim.seq[1] = 0;
    sim.run_for(1000 * MS);
    assert!(sim.events.iter().any(|(i, _, e)| *i == 0
        && matches!(
            e,
            MembershipEvent::Incarnation {
                node: 2,
                previous: 1002,
                current: 5000
            }
        )));
    assert!(sim.all_up());
}

#[test]
fn reported_hung_host_fails() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.hung[2] = Some(400);
    sim.run_for(400 * MS);
    assert_eq!(
        sim.state(0, 2),
        HostState::Up,
        "hung shorter than the limit"
    );
    sim.hung[2] = Some(1200);
    sim.run_for(400 * MS);
    assert!(sim.events.iter().any(|(i, _, e)| *i == 0
        && matches!(
            e,
            MembershipEvent::HostState {
                node: 3,
                to: HostState::Failed(FailReason::Hung),
                ..
            }
        )));
    // It is told, rejoins, and is not counted while it still reports itself hung.
    assert_ne!(sim.state(0, 2), HostState::Up);
    assert!(sim
        .events
        .iter()
        .any(|(i, _, e)| *i == 2 && matches!(e, MembershipEvent::Expelled { .. })));
}

#[test]
fn config_mismatch_is_refused() {
    let mut m = Membership::new(cfg(1, 3, 1), 1, Duration::ZERO);
    let mut peer = Membership::new(cfg(2, 3, 1), 2, Duration::ZERO);
    // It heard this host first: its heartbeats are fresh.
    peer.on_heartbeat(5 * MS, 1, 1, Accepted::First, &m.heartbeat(0));
    let mut other = peer.heartbeat(0);
    other.config_digest = [9; 16];
    let a = m.on_heartbeat(10 * MS, 2, 2, Accepted::First, &other);
    assert_eq!(
        a,
        vec![Action::Event(MembershipEvent::ConfigMismatch { node: 2 })]
    );
    assert_eq!(m.state_of(2), Some(HostState::Unknown));
    assert!(
        m.on_heartbeat(20 * MS, 2, 2, Accepted::Same, &other)
            .is_empty(),
        "reported once"
    );
}

#[test]
fn two_node_waits_for_all_then_survives_peer_loss() {
    let mut sim = Sim::new(2, 1);
    sim.powered[1] = false;
    sim.run_for(1000 * MS);
    assert!(
        !sim.nodes[0].quorum().quorate,
        "wait-for-all: alone since start"
    );
    assert!(sim.nodes[0].quorum().waiting_for_all);
    sim.powered[1] = true;
    sim.run_for(1000 * MS);
    assert!(sim.nodes[0].quorum().quorate);
    sim.powered[1] = false;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 1), HostState::Failed(FailReason::Silent));
    assert!(
        sim.nodes[0].quorum().quorate,
        "two-node: one vote is quorate"
    );
}

#[test]
fn heartbeats_are_due_every_interval_without_bursts_after_a_stall() {
    let mut m = Membership::new(cfg(1, 3, 1), 1, Duration::ZERO);
    let due = |a: &Vec<Action>| a.iter().filter(|a| **a == Action::SendHeartbeats).count();
    assert_eq!(due(&m.tick(Duration::ZERO)), 1);
    assert_eq!(due(&m.tick(100 * MS)), 0);
    assert_eq!(due(&m.tick(200 * MS)), 1);
    assert_eq!(due(&m.tick(5000 * MS)), 1);
    assert_eq!(due(&m.tick(5100 * MS)), 0);
}

#[test]
fn heartbeat_survives_the_wire_encoding() {
    let mut m = Membership::new(cfg(1, 3, 2), 42, Duration::ZERO);
    m.set_watchdog(WatchdogVerdict::Slow {
        lateness_ms: 120,
        psi_percent: 50,
    });
    let _ = m.on_panic_notice(Duration::ZERO, 3);
    let hb = m.heartbeat(1);
    let bytes = postcard::to_allocvec(&hb).unwrap();
    assert_eq!(postcard::from_bytes::<Heartbeat>(&bytes).unwrap(), hb);
}

#[test]
fn a_stalled_host_does_not_blame_its_peers() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.frozen[2] = true;
    sim.run_for(2000 * MS);
    sim.frozen[2] = false;
    sim.run_for(2000 * MS);
    assert!(sim.all_up());
    assert!(sim
        .events
        .iter()
        .any(|(i, _, e)| *i == 2
            && matches!(e, MembershipEvent::Stalled { for_ms } if *for_ms >= 2000)));
    assert!(
        !sim.events.iter().any(|(i, _, e)| *i == 2
            && matches!(
                e,
                MembershipEvent::HostState {
                    to: HostState::Failed(_),
                    ..
                }
            )),
        "the thawed host never marks its live peers Failed"
    );
}

#[test]
fn host_failed_before_it_was_ever_heard_joins_without_rejoining() {
    // h3 is cut off from the start: h1 and h2 fail it as never heard (startup fencing),
    // then hear it. No life of it was seen to fail: it must not be held must-rejoin and
    // accused (it would take the accusation for a one-way partition and fence its
    // accuser, while the accuser fences it); it joins like a host first heard.
    let mut sim = Sim::new(3, 1);
    for j in 0..2 {
        sim.cut.insert((2, j, 0));
        sim.cut.insert((j, 2, 0));
    }
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    let incarnation = sim.nodes[2].incarnation();
    sim.cut.clear();
    sim.run_for(2000 * MS);
    let must_rejoin = sim
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, MembershipEvent::MustRejoin { .. }));
    assert!(!must_rejoin, "{:?}", sim.events);
    assert!(sim.nodes[2].accusers().is_empty());
    assert_eq!(sim.nodes[2].incarnation(), incarnation, "it did not rejoin");
    let states: Vec<_> = (0..3)
        .flat_map(|i| (0..3).filter(move |j| *j != i).map(move |j| (i, j)))
        .map(|(i, j)| (i, j, sim.state(i, j)))
        .collect();
    assert!(sim.all_up(), "{states:?} {:?}", sim.events);
}
