//! Unit tests of the fencing decision on hand-made views.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::membership::FailReason;

const MS: Duration = Duration::from_millis(1);

fn cfg(me: NodeId, n: u32, levels: Vec<LevelKind>) -> FencingConfig {
    FencingConfig {
        me,
        levels: (1..=n).map(|i| (i, levels.clone())).collect(),
        priority: (1..=n)
            .map(|i| (i, (1, std::cmp::Reverse(format!("h{i}")))))
            .collect(),
        two_node: n == 2,
        race_delay: 2000 * MS,
        retry_backoff: 1000 * MS,
        max_backoff: 8000 * MS,
    }
}

fn agents(name: &str) -> LevelKind {
    LevelKind::Agents(vec![name.to_string()])
}

fn peer(node: NodeId, state: HostState) -> PeerFacts {
    PeerFacts {
        node,
        state,
        incarnation: 10 + node as u64,
        latest: 10 + node as u64,
        panic_noticed: false,
        must_rejoin: false,
        accuses_me: false,
        silent_long: true,
    }
}

fn view(quorate: bool, peers: Vec<PeerFacts>) -> View {
    View {
        quorate,
        peers,
        stalled_ago: None,
    }
}

fn failed(node: NodeId) -> PeerFacts {
    peer(node, HostState::Failed(FailReason::Silent))
}

fn runs(actions: &[FenceAction]) -> Vec<(NodeId, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            FenceAction::RunLevel { target, level, .. } => Some((*target, *level)),
            _ => None,
        })
        .collect()
}

fn downs(actions: &[FenceAction]) -> Vec<DownRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            FenceAction::Event(FenceEvent::Down(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Confirms every journal write `actions` ask for, as a driver whose disk works would,
/// and returns `actions` with what the confirmations gave.
fn settle(f: &mut Fencing, now: Duration, actions: Vec<FenceAction>) -> Vec<FenceAction> {
    let mut out = actions.clone();
    for a in &actions {
        if let FenceAction::JournalDown(r) = a {
            out.extend(f.on_journaled(now, r, Ok(())));
        }
    }
    out
}

fn journal_writes(actions: &[FenceAction]) -> Vec<DownRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            FenceAction::JournalDown(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn coordinator_fences_and_only_proof_makes_down() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    let a = f.tick(Duration::ZERO, &v);
    assert_eq!(runs(&a), vec![(3, 0)]);
    // Time alone never makes it down.
    for t in 1..100 {
        assert!(downs(&f.tick(t * 100 * MS, &v)).is_empty());
    }
    assert!(downs(&f.tick(3000 * MS, &v)).is_empty());
    assert_eq!(f.status()[1].phase, "fencing");
    let a = f.on_level_result(10_000 * MS, 3, 0, true, String::new());
    let a = settle(&mut f, 10_000 * MS, a);
    assert_eq!(
        downs(&a),
        vec![DownRecord {
            target: 3,
            incarnation: 13,
            proof: Proof::PowerOff {
                devices: vec!["ipmi".into()]
            },
            by: 1
        }]
    );
}

#[test]
fn non_coordinator_and_minority_do_not_shoot() {
    let mut f = Fencing::new(cfg(2, 3, vec![agents("ipmi")]));
    let a = f.tick(
        Duration::ZERO,
        &view(true, vec![peer(1, HostState::Up), failed(3)]),
    );
    assert!(runs(&a).is_empty(), "h1 is the coordinator");
    let mut g = Fencing::new(cfg(3, 3, vec![agents("ipmi")]));
    let a = g.tick(Duration::ZERO, &view(false, vec![failed(1), failed(2)]));
    assert!(runs(&a).is_empty(), "no quorum, no fencing");
}

#[test]
fn a_new_coordinator_takes_over() {
    let mut f = Fencing::new(cfg(2, 3, vec![agents("ipmi")]));
    assert!(runs(&f.tick(
        Duration::ZERO,
        &view(true, vec![peer(1, HostState::Up), failed(3)])
    ))
    .is_empty());
    // h1 dies mid-fence: h2 is now the lowest live node.
    let a = f.tick(1000 * MS, &view(true, vec![failed(1), failed(3)]));
    assert_eq!(runs(&a), vec![(1, 0), (3, 0)]);
}

#[test]
fn levels_fall_back_then_rounds_back_off() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("dummy"), agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    assert_eq!(runs(&f.tick(Duration::ZERO, &v)), vec![(3, 0)]);
    let a = f.on_level_result(100 * MS, 3, 0, false, "fence_dummy failed".into());
    assert!(matches!(
        a[0],
        FenceAction::Event(FenceEvent::LevelFailed {
            target: 3,
            level: 1,
            ..
        })
    ));
    assert_eq!(runs(&f.tick(110 * MS, &v)), vec![(3, 1)]);
    let a = f.on_level_result(200 * MS, 3, 1, false, "timeout".into());
    assert!(a.iter().any(|a| matches!(
        a,
        FenceAction::Event(FenceEvent::AllLevelsFailed {
            round: 1,
            retry_in_ms: 1000,
            ..
        })
    )));
    assert_eq!(f.status()[1].phase, "unfenced");
    assert!(
        runs(&f.tick(1100 * MS, &v)).is_empty(),
        "waits for the backoff"
    );
    assert_eq!(
        runs(&f.tick(1200 * MS, &v)),
        vec![(3, 0)],
        "round 2 starts from level 1"
    );
    let _ = f.on_level_result(1300 * MS, 3, 0, false, String::new());
    let _ = f.tick(1310 * MS, &v);
    let a = f.on_level_result(1400 * MS, 3, 1, false, String::new());
    assert!(a.iter().any(|a| matches!(
        a,
        FenceAction::Event(FenceEvent::AllLevelsFailed {
            round: 2,
            retry_in_ms: 2000,
            ..
        })
    )));
}

#[test]
fn kdump_level_accepts_a_notice_or_gives_way() {
    let kd = LevelKind::Kdump { wait: 3000 * MS };
    let mut f = Fencing::new(cfg(1, 3, vec![kd.clone(), agents("ipmi")]));
    let mut p3 = failed(3);
    p3.state = HostState::Failed(FailReason::Panic);
    p3.panic_noticed = true;
    let a = f.tick(
        Duration::ZERO,
        &view(true, vec![peer(2, HostState::Up), p3]),
    );
    let a = settle(&mut f, Duration::ZERO, a);
    assert_eq!(downs(&a)[0].proof, Proof::KdumpNotice);
    assert!(runs(&a).is_empty(), "no power-off needed");

    let mut g = Fencing::new(cfg(1, 3, vec![kd, agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    assert!(runs(&g.tick(Duration::ZERO, &v)).is_empty());
    assert_eq!(g.status()[1].phase, "waiting-kdump");
    assert!(runs(&g.tick(2900 * MS, &v)).is_empty());
    let _ = g.tick(3000 * MS, &v);
    assert_eq!(runs(&g.tick(3010 * MS, &v)), vec![(3, 1)]);
}

#[test]
fn a_panic_notice_is_no_proof_for_a_host_heard_again() {
    let kd = LevelKind::Kdump { wait: 3000 * MS };
    let mut f = Fencing::new(cfg(1, 3, vec![kd, agents("ipmi")]));
    let mut p3 = peer(3, HostState::Failed(FailReason::Panic));
    p3.panic_noticed = true;
    // Failed, but heard again since: alive, whatever a notice says.
    p3.must_rejoin = true;
    let v = view(true, vec![peer(2, HostState::Up), p3]);
    for t in 0..30 {
        assert!(downs(&f.tick(t * 100 * MS, &v)).is_empty());
    }
    assert!(downs(&f.tick(3000 * MS, &v)).is_empty());
    assert_eq!(
        runs(&f.tick(3010 * MS, &v)),
        vec![(3, 1)],
        "the next level powers it off instead"
    );
}

#[test]
fn a_panic_notice_is_proof_only_once_the_host_is_silent_for_the_suspect_time() {
    let kd = LevelKind::Kdump { wait: 3000 * MS };
    let mut f = Fencing::new(cfg(1, 3, vec![kd, agents("ipmi")]));
    let mut p3 = peer(3, HostState::Failed(FailReason::Panic));
    p3.panic_noticed = true;
    p3.silent_long = false;
    let v = view(true, vec![peer(2, HostState::Up), p3]);
    assert!(downs(&f.tick(Duration::ZERO, &v)).is_empty());
    assert!(
        downs(&f.tick(300 * MS, &v)).is_empty(),
        "a stalled agent is no crash"
    );
    p3.silent_long = true;
    let v = view(true, vec![peer(2, HostState::Up), p3]);
    let a = f.tick(400 * MS, &v);
    assert_eq!(journal_writes(&a)[0].proof, Proof::KdumpNotice);
    assert_eq!(
        downs(&settle(&mut f, 400 * MS, a))[0].proof,
        Proof::KdumpNotice
    );
}

#[test]
fn two_node_race_weaker_side_waits() {
    let mut strong = Fencing::new(cfg(1, 2, vec![agents("ipmi")]));
    let mut weak = Fencing::new(cfg(2, 2, vec![agents("ipmi")]));
    assert_eq!(
        runs(&strong.tick(Duration::ZERO, &view(true, vec![failed(2)]))),
        vec![(2, 0)]
    );
    let a = weak.tick(Duration::ZERO, &view(true, vec![failed(1)]));
    assert!(runs(&a).is_empty());
    assert!(matches!(
        a[0],
        FenceAction::Event(FenceEvent::RaceDelay {
            target: 1,
            delay_ms: 2000
        })
    ));
    assert!(runs(&weak.tick(1999 * MS, &view(true, vec![failed(1)]))).is_empty());
    assert_eq!(
        runs(&weak.tick(2000 * MS, &view(true, vec![failed(1)]))),
        vec![(1, 0)],
        "the stronger side was really dead"
    );
}

#[test]
fn confirm_down_is_refused_while_heard_alive() {
    let mut f = Fencing::new(cfg(1, 3, vec![LevelKind::Manual]));
    let mut p3 = failed(3);
    let _ = f.tick(
        Duration::ZERO,
        &view(true, vec![peer(2, HostState::Up), p3]),
    );
    assert_eq!(f.status()[1].phase, "awaiting-operator");
    assert!(matches!(f.confirm_down(2), Err(Refusal::HeardAlive(2, _))));
    p3.must_rejoin = true;
    let _ = f.tick(10 * MS, &view(true, vec![peer(2, HostState::Up), p3]));
    assert!(matches!(f.confirm_down(3), Err(Refusal::HeardAlive(3, _))));
    p3.must_rejoin = false;
    let _ = f.tick(20 * MS, &view(true, vec![peer(2, HostState::Up), p3]));
    let a = f.confirm_down(3).unwrap();
    let a = settle(&mut f, 30 * MS, a);
    assert_eq!(downs(&a)[0].proof, Proof::Operator);
    assert_eq!(f.confirm_down(3), Err(Refusal::AlreadyDown(3)));
}

/// A Left host is never a fence target, but one that lost power while left (its agent
/// gone, nothing detects it) can be confirmed down by the operator.
#[test]
fn a_left_host_is_not_fenced_and_may_be_confirmed_down() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let left = peer(2, HostState::Left);
    for t in 0..5 {
        let a = f.tick(
            t * 1000 * MS,
            &view(true, vec![left, peer(3, HostState::Up)]),
        );
        assert!(runs(&a).is_empty(), "a Left host is fenced");
    }
    let a = f.confirm_down(2).unwrap();
    let a = settle(&mut f, 6000 * MS, a);
    assert_eq!(downs(&a)[0].proof, Proof::Operator);
}

#[test]
fn peers_adopt_down_and_a_rebooted_host_rejoins() {
    let mut f = Fencing::new(cfg(2, 3, vec![agents("ipmi")]));
    let _ = f.tick(
        Duration::ZERO,
        &view(true, vec![peer(1, HostState::Up), failed(3)]),
    );
    let rec = DownRecord {
        target: 3,
        incarnation: 13,
        proof: Proof::PowerOff {
            devices: vec!["ipmi".into()],
        },
        by: 1,
    };
    let a = f.on_peer_down(&rec, 13, false);
    assert_eq!(downs(&settle(&mut f, MS, a)), vec![rec.clone()]);
    assert!(f.on_peer_down(&rec, 13, false).is_empty(), "idempotent");
    assert_eq!(f.down_records(), vec![rec.clone()]);
    let mut back = peer(3, HostState::Joining);
    back.incarnation = 99;
    let a = f.tick(5000 * MS, &view(true, vec![peer(1, HostState::Up), back]));
    assert!(matches!(
        a[0],
        FenceAction::Event(FenceEvent::Rejoined {
            target: 3,
            incarnation: 99
        })
    ));
    assert_eq!(f.status()[1].phase, "alive");
    // An old record about a previous life is not adopted while the host is heard...
    assert!(f.on_peer_down(&rec, 99, true).is_empty());
}

#[test]
fn restore_from_journal() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let rec = DownRecord {
        target: 2,
        incarnation: 12,
        proof: Proof::Operator,
        by: 1,
    };
    f.restore([rec.clone()]);
    assert_eq!(f.down(2), Some(&rec));
    let status: BTreeMap<_, _> = f.status().into_iter().map(|s| (s.node, s.phase)).collect();
    assert_eq!(status[&2], "down");
    assert_eq!(status[&3], "alive");
}

#[test]
fn a_host_without_fence_levels_is_reported_once() {
    let mut f = Fencing::new(cfg(1, 3, vec![]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    let a = f.tick(Duration::ZERO, &v);
    assert_eq!(
        a,
        vec![FenceAction::Event(FenceEvent::NoFenceLevels { target: 3 })]
    );
    for t in 1..300 {
        assert!(
            f.tick(t * 1000 * MS, &v).is_empty(),
            "not repeated, never down without proof"
        );
    }
    assert_eq!(f.status()[1].phase, "unfenced");
    let a = f.confirm_down(3).unwrap();
    let a = settle(&mut f, 300_000 * MS, a);
    assert_eq!(downs(&a)[0].proof, Proof::Operator);
}

/// A host cut off from everyone sees one peer Failed while the others are still
/// Suspect, and still counts them for quorum: it must not shoot before the view settles
/// (then it has lost quorum).
#[test]
fn nothing_is_fenced_while_a_peer_is_suspect() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let unsettled = view(true, vec![failed(2), peer(3, HostState::Suspect)]);
    assert!(runs(&f.tick(Duration::ZERO, &unsettled)).is_empty());
    let isolated = view(false, vec![failed(2), failed(3)]);
    assert!(runs(&f.tick(100 * MS, &isolated)).is_empty(), "quorum lost");
    // On the majority side the same host is fenced once the view settles.
    let mut g = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    assert!(runs(&g.tick(Duration::ZERO, &unsettled)).is_empty());
    let settled = view(true, vec![failed(2), peer(3, HostState::Up)]);
    assert_eq!(runs(&g.tick(100 * MS, &settled)), vec![(2, 0)]);
}

/// Proof alone is not DOWN: the record must be on disk first. Until then nothing is
/// shared with peers and nothing may be recovered.
#[test]
fn down_waits_for_the_journal() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    let _ = f.tick(Duration::ZERO, &v);
    let a = f.on_level_result(500 * MS, 3, 0, true, String::new());
    assert!(
        downs(&a).is_empty(),
        "not DOWN before it is journaled: {a:?}"
    );
    let written = journal_writes(&a);
    assert_eq!(written.len(), 1);
    assert_eq!(f.status()[1].phase, "journaling");
    assert!(f.down_records().is_empty(), "not shared with peers yet");
    assert!(f.down(3).is_none());
    assert!(f.decided(3));
    // Time passing without an answer from the journal changes nothing.
    for t in 6..100 {
        let a = f.tick(t * 100 * MS, &v);
        assert!(a.is_empty(), "{a:?}");
    }
    // A peer's record of the same host is not adopted meanwhile (no second write).
    assert!(f.on_peer_down(&written[0], 13, false).is_empty());
    assert!(f.confirm_down(3).is_err());
    let a = f.on_journaled(10_000 * MS, &written[0], Ok(()));
    assert_eq!(downs(&a), written);
    assert_eq!(f.down_records(), written);
    assert_eq!(f.status()[1].phase, "down");
    // A second confirmation of the same record changes nothing.
    assert!(f.on_journaled(10_001 * MS, &written[0], Ok(())).is_empty());
}

/// A failing journal is reported once per record and written again every
/// `JOURNAL_RETRY`; the host is DOWN only after a write succeeds.
#[test]
fn a_failed_journal_write_is_reported_once_and_retried() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    let _ = f.tick(Duration::ZERO, &v);
    let a = f.on_level_result(100 * MS, 3, 0, true, String::new());
    let rec = journal_writes(&a).remove(0);
    let a = f.on_journaled(200 * MS, &rec, Err("read-only file system".into()));
    assert_eq!(
        a,
        vec![FenceAction::Event(FenceEvent::JournalFailed {
            target: 3,
            detail: "read-only file system".into(),
            retry_in_ms: JOURNAL_RETRY.as_millis() as u64,
        })]
    );
    assert_eq!(f.status()[1].phase, "journal-failed");
    assert_eq!(f.journaling(), vec![(&rec, 1)]);
    assert!(f.down_records().is_empty());
    // Waiting for the retry: no write, and a stray answer is ignored.
    assert!(f.tick(1100 * MS, &v).is_empty());
    assert!(f.on_journaled(1150 * MS, &rec, Ok(())).is_empty());
    assert!(f.down(3).is_none());
    let a = f.tick(1200 * MS, &v);
    assert_eq!(journal_writes(&a), vec![rec.clone()]);
    assert!(f.tick(1300 * MS, &v).is_empty(), "one write at a time");
    let a = f.on_journaled(1400 * MS, &rec, Err("read-only file system".into()));
    assert!(a.is_empty(), "reported once: {a:?}");
    let a = f.tick(2400 * MS, &v);
    assert_eq!(journal_writes(&a), vec![rec.clone()]);
    let a = f.on_journaled(2500 * MS, &rec, Ok(()));
    assert_eq!(downs(&a), vec![rec.clone()]);
    assert_eq!(f.down_records(), vec![rec]);
}

/// A host back in a new life before its DOWN could be written was never acted on:
/// it is alive again, and a late confirmation changes nothing.
#[test]
fn a_host_back_while_journaling_is_alive_again() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let v = view(true, vec![peer(2, HostState::Up), failed(3)]);
    let _ = f.tick(Duration::ZERO, &v);
    let a = f.on_level_result(100 * MS, 3, 0, true, String::new());
    let rec = journal_writes(&a).remove(0);
    let mut back = peer(3, HostState::Joining);
    back.incarnation = 99;
    let a = f.tick(5000 * MS, &view(true, vec![peer(2, HostState::Up), back]));
    assert_eq!(
        a,
        vec![FenceAction::Event(FenceEvent::Rejoined {
            target: 3,
            incarnation: 99
        })]
    );
    assert!(f.on_journaled(5100 * MS, &rec, Ok(())).is_empty());
    assert!(f.down(3).is_none());
    assert_eq!(f.status()[1].phase, "alive");
}

/// Every way to DOWN goes through the journal: a kdump proof, a peer's record and an
/// operator's confirmation.
#[test]
fn every_proof_waits_for_the_journal() {
    let kd = LevelKind::Kdump { wait: 3000 * MS };
    let mut f = Fencing::new(cfg(1, 3, vec![kd]));
    let mut p3 = peer(3, HostState::Failed(FailReason::Panic));
    p3.panic_noticed = true;
    let a = f.tick(
        Duration::ZERO,
        &view(true, vec![peer(2, HostState::Up), p3]),
    );
    assert!(downs(&a).is_empty());
    assert_eq!(journal_writes(&a)[0].proof, Proof::KdumpNotice);

    let mut g = Fencing::new(cfg(2, 3, vec![agents("ipmi")]));
    let rec = DownRecord {
        target: 3,
        incarnation: 13,
        proof: Proof::Operator,
        by: 1,
    };
    let a = g.on_peer_down(&rec, 13, false);
    assert_eq!(a, vec![FenceAction::JournalDown(rec.clone())]);
    assert!(g.down_records().is_empty());

    let mut h = Fencing::new(cfg(1, 3, vec![LevelKind::Manual]));
    let _ = h.tick(
        Duration::ZERO,
        &view(true, vec![peer(2, HostState::Up), failed(3)]),
    );
    let a = h.confirm_down(3).unwrap();
    assert!(downs(&a).is_empty());
    assert_eq!(journal_writes(&a)[0].proof, Proof::Operator);
    assert!(h.down(3).is_none());
}

/// A power-off ends every incarnation heard before it, confirmed or not: the record
/// names the latest, so that peers that heard that one do not take it for a record of
/// an earlier life. A record of an earlier life than one heard lately is refused.
#[test]
fn a_record_names_the_latest_life_heard_and_older_ones_are_refused() {
    let mut f = Fencing::new(cfg(1, 3, vec![agents("ipmi")]));
    let mut h3 = failed(3);
    h3.latest = 20;
    let v = view(true, vec![peer(2, HostState::Up), h3]);
    let _ = f.tick(Duration::ZERO, &v);
    let a = f.on_level_result(500 * MS, 3, 0, true, String::new());
    let written = journal_writes(&a);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].incarnation, 20, "{written:?}");

    let mut g = Fencing::new(cfg(2, 3, vec![agents("ipmi")]));
    let _ = g.tick(
        Duration::ZERO,
        &view(true, vec![peer(1, HostState::Up), failed(3)]),
    );
    let old = DownRecord {
        incarnation: 13,
        ..written[0].clone()
    };
    assert!(
        g.on_peer_down(&old, 20, true).is_empty(),
        "heard lately in life 20"
    );
    assert!(!g.decided(3));
    // Silent for the dead time since: the record is adopted (its prover may have been
    // cut off from a rejoin before its proof).
    assert_eq!(journal_writes(&g.on_peer_down(&old, 20, false)), vec![old]);
}
