//! The membership machine fed what an authentic heartbeat can say. A host holding the
//! cluster key is trusted, but a buggy or mismatched one must still not crash its
//! peers: whatever view, votes, watchdog verdict and incarnations its heartbeats carry,
//! in whatever order with whatever gaps in time, together with panic notices and
//! rejoins, nothing panics, and no host that was heard within the dead time is declared
//! Failed for silence (that would fence a healthy host).

#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use hvcluster_common::membership::{
    Action, FailReason, Heartbeat, HostState, Membership, MembershipConfig, MembershipEvent,
    PeerView, WatchdogVerdict,
};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::ReplayWindow;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const DIGEST: [u8; 16] = [7; 16];

fn config(hosts: u32) -> MembershipConfig {
    MembershipConfig {
        me: 1,
        hosts: (1..=hosts)
            .map(|id| (id, format!("h{id}"), 1 + id % 2))
            .collect(),
        interconnects: 2,
        interval: Duration::from_millis(200),
        suspect_after: Duration::from_millis(600),
        dead_after: Duration::from_millis(1200),
        hung_limit: Duration::from_millis(3000),
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: hosts,
            two_node: hosts == 2,
            wait_for_all: hosts == 2,
        },
        digest: DIGEST,
    }
}

fn small<T: serde::de::DeserializeOwned>(u: &mut Unstructured<'_>) -> Result<Option<T>> {
    let len = u.int_in_range(1..=6)?;
    Ok(postcard::from_bytes(u.bytes(len)?).ok())
}

fn heartbeat(u: &mut Unstructured<'_>) -> Result<Heartbeat> {
    let mut view = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        view.push(PeerView {
            node: u.int_in_range(0..=5)?,
            incarnation: u.int_in_range(0..=4)?,
            state: small::<HostState>(u)?.unwrap_or(HostState::Up),
        });
    }
    Ok(Heartbeat {
        // The frame intake drops a heartbeat that names another interconnect than the
        // one it came in on, so it always names one that exists.
        interconnect: u.int_in_range(0..=1)?,
        watchdog: small::<WatchdogVerdict>(u)?.unwrap_or_default(),
        quorate: u.arbitrary()?,
        votes: u.int_in_range(0..=8)?,
        config_digest: if u.ratio(1, 8)? { [0; 16] } else { DIGEST },
        view,
        ..Heartbeat::default()
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let hosts = u.int_in_range(2..=5)?;
    let mut now = Duration::from_millis(u.int_in_range(0..=10_000)?);
    let start = now;
    let dead_after = config(hosts).dead_after;
    let mut last_heard: HashMap<u32, Duration> = HashMap::new();
    let mut incarnation = 10;
    let mut m = Membership::new(config(hosts), incarnation, now);
    let mut windows: HashMap<u32, ReplayWindow> = HashMap::new();
    let mut actions = Vec::new();
    while !u.is_empty() {
        match u.int_in_range(0..=9)? {
            0..=2 => {
                now += Duration::from_millis(u.int_in_range(0..=3000)?);
                actions = m.tick(now);
            }
            3..=7 => {
                let from = u.int_in_range(0..=hosts + 1)?;
                let (inc, seq) = (u.int_in_range(0..=4)?, u.int_in_range(0..=40)?);
                let hb = heartbeat(u)?;
                if let Ok(accepted) = windows.entry(from).or_default().accept(inc, seq) {
                    actions = m.on_heartbeat(now, from, inc, accepted, &hb);
                    if hb.config_digest == DIGEST {
                        last_heard.insert(from, now);
                    }
                }
            }
            8 => actions = m.on_panic_notice(now, u.int_in_range(0..=hosts + 1)?),
            _ => {
                if actions.contains(&Action::Rejoin) || u.ratio(1, 4)? {
                    incarnation += 1;
                    actions = m.rejoin(now, incarnation);
                }
            }
        }
        for a in &actions {
            if let Action::Event(MembershipEvent::HostState {
                node,
                to: HostState::Failed(FailReason::Silent),
                ..
            }) = a
            {
                let heard = last_heard.get(node).copied().unwrap_or(start);
                assert!(
                    now.saturating_sub(heard) >= dead_after,
                    "host {node} Failed for silence {:?} after it was heard",
                    now.saturating_sub(heard)
                );
            }
        }
        let peers = m.peers(now);
        assert_eq!(peers.len(), hosts as usize - 1, "one status per peer");
        let _ = m.heartbeat(0);
        let _ = m.quorum();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
