//! Clean leave on virtual time: Left, never Failed; quorum downscaled; a later life joins;
//! a leave is taken only from the host itself, for its current incarnation.

use super::*;

/// Index `i` says it leaves, sends its last heartbeats, and stops.
fn leave(sim: &mut Sim, i: usize) {
    let actions = sim.nodes[i].leave();
    sim.perform(i, actions);
    sim.powered[i] = false;
}

/// Delivers `hb` from index `i` to index `j` as the next frame of `i`.
fn deliver(sim: &mut Sim, i: usize, j: usize, hb: &Heartbeat) -> Result<(), String> {
    sim.seq[i] += 1;
    let inc = sim.nodes[i].incarnation();
    let accepted = sim
        .windows
        .entry((j, i))
        .or_default()
        .accept(inc, sim.seq[i])
        .map_err(|e| e.to_string())?;
    let actions = sim.nodes[j].on_heartbeat(sim.now, i as u32 + 1, inc, accepted, hb);
    sim.perform(j, actions);
    Ok(())
}

/// Index `i`'s agent starts again, with a new incarnation.
fn restart(sim: &mut Sim, i: usize, incarnation: u64) {
    let cfg = sim.nodes[i].config().clone();
    sim.nodes[i] = Membership::new(cfg, incarnation, sim.now);
    sim.seq[i] = 0;
    sim.powered[i] = true;
}

#[test]
fn a_host_that_leaves_is_left_never_failed_and_its_vote_is_no_longer_expected() {
    let mut sim = Sim::new(4, 2);
    sim.run_for(1000 * MS);
    assert!(sim.all_up());
    assert_eq!(sim.nodes[0].quorum().needed, 3);
    leave(&mut sim, 1);
    sim.run_for(5000 * MS);
    for obs in [0, 2, 3] {
        assert_eq!(sim.state(obs, 1), HostState::Left);
        assert!(!ever_failed(&sim, obs, 2), "h2 Failed on h{}", obs + 1);
        let q = sim.nodes[obs].quorum();
        assert_eq!((q.votes, q.needed, q.quorate), (3, 2, true));
    }
    // Heartbeats never name Left: an older reader decodes them.
    assert!(sim.nodes[0]
        .heartbeat(0)
        .view
        .iter()
        .all(|v| v.state != HostState::Left));
    // Downscaled, not lowered further: one more host lost is a majority of 3 still.
    sim.powered[3] = false;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 3), HostState::Failed(FailReason::Silent));
    assert!(sim.nodes[0].quorum().quorate);
    sim.powered[2] = false;
    sim.run_for(2000 * MS);
    assert!(!sim.nodes[0].quorum().quorate, "1 vote of 3 expected");
}

#[test]
fn the_last_host_standing_stays_quorate_when_the_others_leave_one_by_one() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    leave(&mut sim, 2);
    sim.run_for(2000 * MS);
    leave(&mut sim, 1);
    sim.run_for(2000 * MS);
    let q = sim.nodes[0].quorum();
    assert_eq!((q.votes, q.needed, q.quorate), (1, 1, true));
    assert!(!ever_failed(&sim, 0, 2) && !ever_failed(&sim, 0, 3));
}

#[test]
fn a_left_host_started_again_joins_and_is_expected_again() {
    let mut sim = Sim::new(4, 1);
    sim.run_for(1000 * MS);
    leave(&mut sim, 1);
    sim.run_for(30_000 * MS);
    assert_eq!(sim.state(0, 1), HostState::Left);
    restart(&mut sim, 1, 5000);
    sim.run_for(1500 * MS);
    assert!(sim.all_up());
    for obs in [0, 2, 3] {
        let q = sim.nodes[obs].quorum();
        assert_eq!((q.votes, q.needed), (4, 3));
        assert!(!ever_failed(&sim, obs, 2));
    }
    // Its silence in this new life is judged as usual.
    sim.powered[1] = false;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 1), HostState::Failed(FailReason::Silent));
}

#[test]
fn a_left_host_heard_again_in_the_same_incarnation_stays_left() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    let mut plain = sim.nodes[1].heartbeat(0);
    leave(&mut sim, 1);
    sim.run_for(1000 * MS);
    assert_eq!(sim.state(0, 1), HostState::Left);
    // Its own (say a frame still in flight), newer than the leave, not leaving.
    plain.view = sim.nodes[1].heartbeat(0).view;
    plain.leaving = false;
    for _ in 0..5 {
        deliver(&mut sim, 1, 0, &plain).unwrap();
    }
    sim.run_for(3000 * MS);
    assert_eq!(sim.state(0, 1), HostState::Left);
    assert_eq!(sim.nodes[0].quorum().votes, 2);
}

#[test]
fn a_recorded_leave_of_an_earlier_life_does_not_make_a_later_one_left() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    // A leave of h2's first life, recorded off the wire.
    let actions = sim.nodes[1].leave();
    drop(actions);
    let recorded = sim.nodes[1].heartbeat(0);
    let (old_inc, old_seq) = (sim.nodes[1].incarnation(), sim.seq[1] + 1);
    // h2 did not leave after all: it crashed and started again.
    restart(&mut sim, 1, 5000);
    sim.run_for(1500 * MS);
    assert!(sim.all_up());
    // Played to h1, which knows h2's new life: the replay window refuses it.
    let refused = sim
        .windows
        .entry((0, 1))
        .or_default()
        .accept(old_inc, old_seq);
    assert!(refused.is_err());
    // Played to h3 after h3 restarted (its window forgot everything): accepted by the
    // window, but it does not name h3's new incarnation, so nothing is taken from it.
    restart(&mut sim, 2, 6000);
    sim.windows.remove(&(2, 1));
    let accepted = sim
        .windows
        .entry((2, 1))
        .or_default()
        .accept(old_inc, old_seq)
        .unwrap();
    let actions = sim.nodes[2].on_heartbeat(sim.now, 2, old_inc, accepted, &recorded);
    sim.perform(2, actions);
    assert_ne!(sim.state(2, 1), HostState::Left);
    sim.run_for(1500 * MS);
    assert_eq!(sim.state(2, 1), HostState::Up);
}

#[test]
fn a_failed_host_is_not_taken_out_by_its_leave() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    sim.frozen[2] = true;
    sim.run_for(2000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    sim.frozen[2] = false;
    leave(&mut sim, 2);
    sim.run_for(3000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Failed(FailReason::Silent));
    assert_eq!(
        sim.nodes[0].quorum().needed,
        2,
        "its vote is still expected"
    );
}

#[test]
fn a_host_that_rejoins_keeps_a_left_peer_left() {
    let mut sim = Sim::new(3, 1);
    sim.run_for(1000 * MS);
    leave(&mut sim, 2);
    sim.run_for(1000 * MS);
    let actions = sim.nodes[0].rejoin(sim.now, 9000);
    sim.perform(0, actions);
    sim.run_for(5000 * MS);
    assert_eq!(sim.state(0, 2), HostState::Left);
    assert!(!ever_failed(&sim, 0, 3));
    assert_eq!(sim.nodes[0].quorum().needed, 2);
}
