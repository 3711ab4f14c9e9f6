//! The host core driven through `step` and `tick`: a fixture of three hosts (this one is
//! h1), unit tests of the failover path, and the text cases of
//! `common/tests/testdata/host/` ([`script`]).

mod script;
mod unit;

use std::time::Duration;

use serde_json::json;

use super::{Effect, Event, HostCore};
use crate::config::{ClusterConfig, NodeId};
use crate::host_heartbeat::HostSections;
use crate::hostlink::GuestPresence;
use crate::membership::{Heartbeat, HostState, PeerView};
use crate::wire::Accepted;

/// Configuration digest every host of the fixture shares.
const DIGEST: [u8; 16] = [7; 16];
/// This host's incarnation.
const INCARNATION: u64 = 50;

/// Three hosts at 127.0.0.1..3; h2 has a kdump level then an IPMI one, h3 an IPMI level
/// then a PDU one; guest cluster erp has g1 (node 1) and g2 (node 2).
fn config() -> ClusterConfig {
    serde_json::from_value(json!({
        "cluster": { "name": "t", "key_file": "key" },
        "heartbeat": { "interval_ms": 100, "suspect_after_ms": 300, "dead_after_ms": 600 },
        "kdump": { "enabled": true, "probe_ms": 200 },
        "interconnect": [{ "name": "ic0" }],
        "fence_device": [
            { "name": "kd", "kind": "kdump", "wait_ms": 1000 },
            { "name": "ipmi", "kind": "agent", "agent": "/bin/true" },
            { "name": "pdu", "kind": "agent", "agent": "/bin/true" },
        ],
        "host": [
            { "name": "h1", "node_id": 1, "addresses": { "ic0": "127.0.0.1" } },
            { "name": "h2", "node_id": 2, "addresses": { "ic0": "127.0.0.2" },
              "fence_levels": [["kd"], ["ipmi"]] },
            { "name": "h3", "node_id": 3, "addresses": { "ic0": "127.0.0.3" },
              "fence_levels": [["ipmi"], ["pdu"]] },
        ],
        "guest_cluster": [{
            "name": "erp", "key_file": "erp.key",
            "member": [
                { "node": "g1", "node_id": 1, "domain": "vm-g1" },
                { "node": "g2", "node_id": 2, "domain": "vm-g2" },
            ],
        }],
    }))
    .unwrap()
}

/// The core of h1, started at 0; its kill orders are numbered from 101.
fn core() -> HostCore {
    HostCore::new(&config(), 1, (DIGEST, INCARNATION), Duration::ZERO, 100)
}

/// A heartbeat of `from` that has heard h1 (so it is fresh), carrying `guests`.
fn heartbeat(from: NodeId, guests: &[(&str, NodeId)]) -> Event {
    let mut payload = Heartbeat {
        quorate: true,
        votes: 3,
        config_digest: DIGEST,
        view: vec![PeerView {
            node: 1,
            incarnation: INCARNATION,
            state: HostState::Up,
        }],
        ..Heartbeat::default()
    };
    edit_sections(&mut payload, |s| {
        s.guests = guests
            .iter()
            .map(|(c, n)| GuestPresence {
                cluster: c.to_string(),
                node_id: *n,
                node: format!("g{n}"),
                incarnation: 10 + u64::from(*n),
            })
            .collect();
    });
    Event::Heartbeat {
        from,
        incarnation: 20 + u64::from(from),
        accepted: Accepted::First,
        payload: Box::new(payload),
    }
}

/// Changes the sections of `payload` as `change` says.
fn edit_sections(payload: &mut Heartbeat, change: impl FnOnce(&mut HostSections)) {
    let (mut sections, issues) = HostSections::read(payload);
    assert!(issues.is_empty(), "{issues:?}");
    change(&mut sections);
    sections.write(payload);
}

/// Milliseconds as the core's time.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs the cluster from `from` to `to` ms: heartbeats of `alive` every 100 ms, a tick
/// every 50 ms; returns every effect but heartbeat sends.
fn run(
    core: &mut HostCore,
    (from, to): (u64, u64),
    alive: &[(NodeId, &[(&str, NodeId)])],
) -> Vec<Effect> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        if t % 100 == 0 {
            for (node, guests) in alive {
                out.extend(core.step(ms(t), heartbeat(*node, guests)));
            }
        }
        out.extend(core.tick(ms(t)));
        t += 50;
    }
    out.retain(|e| *e != Effect::SendHeartbeats);
    out
}
