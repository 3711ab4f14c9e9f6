use std::time::Duration;

use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::{ClusterConfig, DeviceKind, FenceDevice};
use hvcluster_common::fencing::{DownRecord, FenceEvent, PeerFacts, Proof, Refusal, View};
use hvcluster_common::membership::{FailReason, HostState, Membership, MembershipConfig};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::events::EventLog;
use crate::fence::bench::FenceBench;

/// Three hosts; h2 has a fence level, h3 has none.
fn config(state_dir: &std::path::Path) -> ClusterConfig {
    serde_json::from_value(json!({
        "cluster": { "name": "t", "key_file": "key", "state_dir": state_dir },
        "interconnect": [{ "name": "ic0" }],
        "fence_device": [
            { "name": "dev", "kind": "agent", "agent": "/bin/true" },
        ],
        "host": [
            { "name": "h1", "node_id": 1, "addresses": { "ic0": "127.0.0.1" } },
            { "name": "h2", "node_id": 2, "addresses": { "ic0": "127.0.0.2" }, "fence_levels": [["dev"]] },
            { "name": "h3", "node_id": 3, "addresses": { "ic0": "127.0.0.3" } },
        ],
    }))
    .unwrap()
}

fn driver(config: &ClusterConfig) -> (FenceBench, mpsc::Receiver<crate::agent::Input>) {
    let (tx, rx) = mpsc::channel(8);
    (FenceBench::open(config, 1, tx).unwrap(), rx)
}

/// Waits for the journal writer's next result and gives it to the driver, as the agent
/// does; returns the events it completes.
fn journaled(d: &mut FenceBench, rx: &mut mpsc::Receiver<crate::agent::Input>) -> Vec<FenceEvent> {
    loop {
        match rx.blocking_recv() {
            Some(crate::agent::Input::Journaled { down, result }) => {
                assert_eq!(result, Ok(()));
                let events = d
                    .on_journaled(Duration::from_secs(6), down.as_ref(), result)
                    .0;
                if !events.is_empty() {
                    return events;
                }
            }
            other => panic!("not a journal result: {other:?}"),
        }
    }
}

fn view(quorate: bool, h2: HostState, h3: HostState) -> View {
    let peer = |node, state| PeerFacts {
        node,
        state,
        incarnation: 7,
        latest: 7,
        panic_noticed: false,
        must_rejoin: false,
        accuses_me: false,
        silent_long: false,
    };
    View {
        quorate,
        peers: vec![peer(2, h2), peer(3, h3)],
        stalled_ago: None,
    }
}

fn membership(config: &ClusterConfig) -> Membership {
    Membership::new(
        MembershipConfig::from_cluster(config, 1, [0; 16]),
        1,
        Duration::ZERO,
    )
}

/// Runs `request` through `handle` and returns the events and the answer.
fn run(
    config: &ClusterConfig,
    fence: &mut FenceBench,
    log: &EventLog,
    request: Request,
) -> (Vec<FenceEvent>, Response) {
    let m = membership(config);
    let (reply, mut rx) = oneshot::channel();
    let journal = fence.journal_path().to_path_buf();
    let cx = Ctx {
        config,
        me: 1,
        membership: &m,
        fence: &mut fence.core,
        journal: &journal,
        events: log,
        now: Duration::from_secs(5),
    };
    let (effects, answer) = handle(cx, request, reply);
    let events = fence.perform(effects);
    answer.send();
    (events, rx.try_recv().unwrap())
}

#[test]
fn names_resolve_to_hosts_and_unknown_names_list_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    assert_eq!(resolve(&c.hosts, "h2").unwrap().node_id, 2);
    let err = resolve(&c.hosts, "h9").unwrap_err();
    assert!(err.contains("no host named \"h9\""), "{err}");
    assert!(err.contains("h1, h2, h3"), "{err}");
    // Node ids are not names.
    assert!(resolve(&c.hosts, "2").is_err());
}

#[test]
fn confirm_down_of_a_host_without_fence_levels_is_journaled_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (mut d, mut rx) = driver(&c);
    d.tick(
        Duration::from_secs(1),
        &view(true, HostState::Up, HostState::Failed(FailReason::Silent)),
    );
    let log = EventLog::new("h1");
    let (events, response) = run(&c, &mut d, &log, Request::ConfirmDown { host: "h3".into() });
    let record = DownRecord {
        target: 3,
        incarnation: 7,
        proof: Proof::Operator,
        by: 1,
    };
    assert!(events.is_empty(), "DOWN only once journaled: {events:?}");
    assert!(
        matches!(&response, Response::Done { message } if message.contains("h3 is DOWN")),
        "{response:?}"
    );
    assert_eq!(
        journaled(&mut d, &mut rx),
        vec![FenceEvent::Down(record.clone())]
    );
    assert_eq!(d.down_records(), vec![record.clone()]);
    // On disk, readable while the driver holds the journal.
    let answer = history(d.journal_path(), host_names(&c));
    // Through the wire encoding, as hvctl reads it.
    let line = serde_json::to_string(&answer).unwrap();
    let Ok(Response::FenceHistory(h)) = serde_json::from_str(&line) else {
        panic!("no history: {line}");
    };
    assert_eq!(h.records.last().unwrap().event, FenceEvent::Down(record));
    assert_eq!(h.host_name(3), "h3");
    assert!(h.damage.is_none());
    // The audit line names the command and the outcome.
    let (_, audit) = log.subscribe_with_history(0);
    assert!(audit
        .iter()
        .any(|e| e.kind == "operator" && e.message.contains("confirm-down h3: done")));
    // A second confirmation is refused and says what proof is held.
    let (_, again) = run(&c, &mut d, &log, Request::ConfirmDown { host: "h3".into() });
    assert!(
        matches!(&again, Response::Refused { message } if message.contains("already DOWN (an operator's confirmation on h1)")),
        "{again:?}"
    );
}

#[test]
fn confirm_down_is_refused_while_the_host_is_heard() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (mut d, _rx) = driver(&c);
    d.tick(
        Duration::from_secs(1),
        &view(true, HostState::Up, HostState::Up),
    );
    assert!(matches!(d.confirm_down(2), Err(Refusal::HeardAlive(2, _))));
    let (events, response) = run(
        &c,
        &mut d,
        &EventLog::new("h1"),
        Request::ConfirmDown { host: "h2".into() },
    );
    assert!(events.is_empty());
    let Response::Refused { message } = response else {
        panic!("{response:?}")
    };
    assert!(
        message.contains("cannot be confirmed down") && message.contains("hvctl fence h2"),
        "{message}"
    );
    assert!(d.down_records().is_empty());
}

#[test]
fn fence_is_refused_without_quorum_for_itself_and_without_levels() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (mut d, _rx) = driver(&c);
    let log = EventLog::new("h1");
    d.tick(
        Duration::from_secs(1),
        &view(false, HostState::Up, HostState::Up),
    );
    let refused = |r: Response| match r {
        Response::Refused { message } => message,
        other => panic!("{other:?}"),
    };
    let m = refused(run(&c, &mut d, &log, Request::Fence { host: "h2".into() }).1);
    assert!(m.contains("no quorum") && m.contains("quorum: yes"), "{m}");
    let m = refused(run(&c, &mut d, &log, Request::Fence { host: "h1".into() }).1);
    assert!(m.contains("h1 is this host"), "{m}");
    let m = refused(run(&c, &mut d, &log, Request::Fence { host: "h3".into() }).1);
    assert!(
        m.contains("no fence_levels") && m.contains("confirm-down h3"),
        "{m}"
    );
    let m = refused(
        run(
            &c,
            &mut d,
            &log,
            Request::Fence {
                host: "nope".into(),
            },
        )
        .1,
    );
    assert!(m.contains("h1, h2, h3"), "{m}");
}

#[tokio::test]
async fn fence_starts_level_one_and_a_second_request_is_refused_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (tx, mut rx) = mpsc::channel(8);
    let mut d = FenceBench::open(&c, 1, tx).unwrap();
    let log = EventLog::new("h1");
    d.tick(
        Duration::from_secs(1),
        &view(true, HostState::Up, HostState::Up),
    );
    let (events, response) = run(&c, &mut d, &log, Request::Fence { host: "h2".into() });
    assert_eq!(
        events,
        vec![FenceEvent::Started {
            target: 2,
            level: 1
        }]
    );
    assert_eq!(
        response,
        Response::Done {
            message: "fencing h2 from level 1; follow with hvctl events -f".into()
        }
    );
    let (_, again) = run(&c, &mut d, &log, Request::Fence { host: "h2".into() });
    assert!(
        matches!(&again, Response::Refused { message } if message.contains("being fenced already (level 1 runs)")),
        "{again:?}"
    );
    // The level really runs (here /bin/true, which never says OFF to status); the
    // journal writer's results come on the same channel.
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(crate::agent::Input::Journaled { .. }) => continue,
                other => break other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        result,
        Some(crate::agent::Input::FenceResult {
            target: 2,
            level: 0,
            ..
        })
    ));
}

fn device(name: &str, kind: DeviceKind, agent: Option<&str>) -> FenceDevice {
    FenceDevice {
        name: name.into(),
        kind,
        agent: agent.map(str::to_string),
        params: Default::default(),
        password_file: None,
        timeout_ms: 5_000,
        retries: 0,
        wait_ms: 0,
    }
}

#[tokio::test]
async fn check_runs_agents_and_lists_other_kinds_as_not_checkable() {
    let results = check(vec![
        device("good", DeviceKind::Agent, Some("/bin/true")),
        device("bad", DeviceKind::Agent, Some("/bin/false")),
        device("missing", DeviceKind::Agent, Some("fence_no_such_agent")),
        device("crash", DeviceKind::Kdump, None),
        device("human", DeviceKind::Manual, None),
    ])
    .await;
    let names: Vec<_> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["good", "bad", "missing", "crash", "human"]);
    assert_eq!(results[0].ok, Some(true));
    assert_eq!(results[0].summary, "reachable");
    assert!(results[0].elapsed_ms.is_some());
    assert_eq!(results[1].ok, Some(false));
    assert_eq!(results[1].summary, "(exit 1)");
    assert_eq!(results[2].ok, Some(false));
    assert!(
        results[2].summary.contains("not found"),
        "{}",
        results[2].summary
    );
    assert_eq!(results[3].ok, None);
    assert_eq!(results[3].summary, "not checkable (kind kdump)");
    assert_eq!(results[4].summary, "not checkable (kind manual)");
}

#[test]
fn history_of_a_damaged_journal_says_where_reading_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let path = {
        let (mut d, mut rx) = driver(&c);
        d.tick(
            Duration::from_secs(1),
            &view(true, HostState::Up, HostState::Failed(FailReason::Silent)),
        );
        d.confirm_down(3).unwrap();
        journaled(&mut d, &mut rx);
        // h3 comes back in a new incarnation: a second record.
        let mut back = view(true, HostState::Up, HostState::Up);
        back.peers[1].incarnation = 8;
        d.tick(Duration::from_secs(2), &back);
        assert!(matches!(
            rx.blocking_recv(),
            Some(crate::agent::Input::Journaled {
                down: None,
                result: Ok(())
            })
        ));
        d.journal_path().to_path_buf()
    };
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte inside the first record's payload, which an intact record follows.
    bytes[20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let Response::FenceHistory(h) = history(&path, Default::default()) else {
        panic!("no history")
    };
    let damage = h.damage.unwrap();
    assert!(
        damage.contains("record 1") && damage.contains("refuse this journal"),
        "{damage}"
    );
}
