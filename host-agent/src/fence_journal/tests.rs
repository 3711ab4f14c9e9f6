//! The fencing driver with journals that block or fail: the driver goes on at once,
//! and a DOWN is reported only after its record is written.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use hvcluster_common::config::ClusterConfig;
use hvcluster_common::fencing::{FenceEvent, PeerFacts, Proof, View, JOURNAL_RETRY};
use hvcluster_common::membership::{FailReason, HostState};
use serde_json::json;
use tokio::sync::mpsc;

use super::Store;
use crate::agent::Input;
use crate::fence::bench::FenceBench;
use crate::fence::JournalHealth;

fn config() -> ClusterConfig {
    serde_json::from_value(json!({
        "cluster": { "name": "t", "key_file": "key", "state_dir": "/nonexistent" },
        "interconnect": [{ "name": "ic0" }],
        "host": [
            { "name": "h1", "node_id": 1, "addresses": { "ic0": "127.0.0.1" } },
            { "name": "h2", "node_id": 2, "addresses": { "ic0": "127.0.0.2" } },
            { "name": "h3", "node_id": 3, "addresses": { "ic0": "127.0.0.3" } },
        ],
    }))
    .unwrap()
}

/// h2 up, h3 Failed (silent).
fn view() -> View {
    let peer = |node, state| PeerFacts {
        node,
        state,
        incarnation: 7,
        latest: 7,
        panic_noticed: false,
        must_rejoin: false,
        accuses_me: false,
        silent_long: true,
    };
    View {
        quorate: true,
        peers: vec![
            peer(2, HostState::Up),
            peer(3, HostState::Failed(FailReason::Silent)),
        ],
        stalled_ago: None,
    }
}

/// A disk that takes as long as the test wants: each write waits for a word on `gate`.
struct Blocked {
    gate: std_mpsc::Receiver<()>,
    written: std_mpsc::Sender<FenceEvent>,
}

impl Store for Blocked {
    fn append(&mut self, event: &FenceEvent) -> Result<u64, String> {
        self.gate.recv().map_err(|_| "closed".to_string())?;
        let _ = self.written.send(event.clone());
        Ok(1)
    }
}

/// A disk on which the first `fail` writes of a DOWN fail.
struct Failing {
    fail: usize,
}

impl Store for Failing {
    fn append(&mut self, event: &FenceEvent) -> Result<u64, String> {
        if self.fail > 0 && matches!(event, FenceEvent::Down(_)) {
            self.fail -= 1;
            return Err("Read-only file system (os error 30)".into());
        }
        Ok(1)
    }
}

type Written = (
    Option<hvcluster_common::fencing::DownRecord>,
    Result<(), String>,
);

/// The next result of a DOWN's write (those of other records are passed by).
fn next_result(rx: &mut mpsc::Receiver<Input>) -> Written {
    loop {
        match rx.blocking_recv() {
            Some(Input::Journaled {
                down: Some(down),
                result,
            }) => return (Some(down), result),
            Some(Input::Journaled { down: None, .. }) => continue,
            other => panic!("not a journal result: {other:?}"),
        }
    }
}

#[test]
fn a_down_waits_for_a_blocked_journal_and_the_driver_goes_on() {
    let (tx, mut rx) = mpsc::channel(8);
    let (open, gate) = std_mpsc::channel();
    let (written_tx, written) = std_mpsc::channel();
    let store = Blocked {
        gate,
        written: written_tx,
    };
    let mut d = FenceBench::with_store(&config(), 1, tx, store).unwrap();
    let v = view();
    let t0 = Instant::now();
    assert!(d
        .tick(Duration::from_secs(1), &v)
        .iter()
        .all(|e| !matches!(e, FenceEvent::Down(_))));
    let events = d.confirm_down(3).unwrap();
    assert!(
        events.is_empty(),
        "not DOWN before it is written: {events:?}"
    );
    // The driver keeps its rhythm while the disk holds the write.
    for i in 0..200 {
        let events = d.tick(Duration::from_secs(1) + Duration::from_millis(i * 10), &v);
        assert!(events.is_empty(), "{events:?}");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the driver waited for the disk: {:?}",
        t0.elapsed()
    );
    assert!(
        d.down_records().is_empty(),
        "not shared before it is written"
    );
    assert!(d.machine().down(3).is_none());
    assert!(rx.try_recv().is_err(), "nothing written yet");
    assert!(written.try_recv().is_err());
    // The disk answers (the history written before it first): the DOWN is on it, then
    // reported and shared.
    open.send(()).unwrap();
    assert!(matches!(
        written.recv().unwrap(),
        FenceEvent::NoFenceLevels { target: 3 }
    ));
    open.send(()).unwrap();
    let (down, result) = next_result(&mut rx);
    let record = down.clone().expect("the write the core waits for");
    assert_eq!(record.proof, Proof::Operator);
    assert_eq!(written.recv().unwrap(), FenceEvent::Down(record.clone()));
    let (events, health) = d.on_journaled(Duration::from_secs(4), down.as_ref(), result);
    assert_eq!(events, vec![FenceEvent::Down(record.clone())]);
    assert_eq!(health, JournalHealth::Same);
    assert_eq!(d.down_records(), vec![record]);
}

#[test]
fn a_failing_journal_is_an_alarm_and_the_down_waits_for_a_write_that_succeeds() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut d = FenceBench::with_store(&config(), 1, tx, Failing { fail: 2 }).unwrap();
    let v = view();
    let _ = d.tick(Duration::from_secs(1), &v);
    assert!(d.confirm_down(3).unwrap().is_empty());
    let (down, result) = next_result(&mut rx);
    assert!(result.is_err());
    let (events, health) = d.on_journaled(Duration::from_secs(2), down.as_ref(), result);
    assert!(
        matches!(&events[..], [FenceEvent::JournalFailed { target: 3, detail, .. }] if detail.contains("Read-only")),
        "{events:?}"
    );
    assert!(matches!(health, JournalHealth::Failing(why) if why.contains("Read-only")));
    assert_eq!(d.journal_problem().map(|(_, n)| n), Some(1));
    assert_eq!(d.machine().status()[1].phase, "journal-failed");
    assert!(d.down_records().is_empty());
    // No new write before the retry time.
    assert!(d
        .tick(Duration::from_secs(2) + JOURNAL_RETRY / 2, &v)
        .is_empty());
    assert!(rx.try_recv().is_err());
    // The retry fails too: counted, not reported again.
    let _ = d.tick(Duration::from_secs(2) + JOURNAL_RETRY, &v);
    let (down, result) = next_result(&mut rx);
    let (events, health) = d.on_journaled(Duration::from_secs(4), down.as_ref(), result);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(health, JournalHealth::Same);
    assert_eq!(d.journal_problem().map(|(_, n)| n), Some(2));
    // The third write succeeds: DOWN now, and the alarm ends.
    let _ = d.tick(Duration::from_secs(4) + JOURNAL_RETRY, &v);
    let (down, result) = next_result(&mut rx);
    let (events, health) = d.on_journaled(Duration::from_secs(6), down.as_ref(), result);
    assert!(
        matches!(&events[..], [FenceEvent::Down(r)] if r.target == 3),
        "{events:?}"
    );
    assert_eq!(health, JournalHealth::Recovered(2));
    assert!(d.journal_problem().is_none());
    assert_eq!(d.down_records().len(), 1);
}

#[test]
fn a_damaged_journal_is_moved_aside_and_the_down_decisions_before_the_damage_stand() {
    use hvcluster_common::fencing::DownRecord;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fencing.journal");
    let down = |target| DownRecord {
        target,
        incarnation: 7,
        proof: Proof::Operator,
        by: 1,
    };
    let second_at = {
        let (mut j, _) = crate::journal::Journal::<FenceEvent>::open(&path).unwrap();
        j.append(&FenceEvent::Down(down(2))).unwrap();
        let at = std::fs::metadata(&path).unwrap().len() as usize;
        j.append(&FenceEvent::Started {
            target: 3,
            level: 1,
        })
        .unwrap();
        j.append(&FenceEvent::Down(down(3))).unwrap();
        at
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second_at + 12] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    // As it was: the agent refused to start.
    assert!(crate::journal::Journal::<FenceEvent>::open(&path).is_err());
    let (_journal, records, problem) = super::open_or_set_aside(&path).unwrap();
    let problem = problem.expect("reported");
    assert!(
        problem.contains("record 2")
            && problem.contains("moved aside")
            && problem.contains("1 DOWN"),
        "{problem}"
    );
    // Only what could be read stands; h3's record after the damage is not guessed at.
    assert_eq!(crate::fence::standing_downs(&records), vec![down(2)]);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let aside: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("fencing.journal.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{names:?}");
    assert_eq!(
        std::fs::read(dir.path().join(aside[0])).unwrap(),
        bytes,
        "kept as it was"
    );
}
