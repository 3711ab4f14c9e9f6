//! Writes the fuzz targets' seed inputs, made with the product's own encoders, under
//! `fuzz/seeds/TARGET/` (the configuration seeds are the documented examples, kept as
//! files there by hand). Run it again after a wire or message format change:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::path::Path;
use std::time::Duration;

use hvcluster_common::admin::Request;
use hvcluster_common::application::{Gossip, GuestHeartbeat};
use hvcluster_common::fencing::{DownRecord, Proof};
use hvcluster_common::host_heartbeat::HostSections;
use hvcluster_common::hostlink::{
    DomainPresence, GuestPresence, HaAssignment, HaFailure, HaLost, HostCapacity, KillAnswer,
    KillOrder, LinkMessage,
};
use hvcluster_common::kdump::{notice_bytes, KDUMP_MAGIC, KDUMP_VERSION};
use hvcluster_common::membership::{
    FailReason, Heartbeat, HostState, Membership, MembershipConfig, PeerView, WatchdogVerdict,
};
use hvcluster_common::migration::MigrationMode;
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::{self, Header, Kind, HEADER_LEN, TAG_LEN};
use hvcluster_fuzz::{CLUSTER_ID, KEY};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };

    let heartbeats = host_heartbeats();
    for (i, hb) in heartbeats.iter().enumerate() {
        let payload = postcard::to_allocvec(hb).expect("encodes");
        write("host_heartbeat", &format!("heartbeat-{i}"), &payload)?;
        let frame = frame(Kind::Heartbeat, i as u64 + 1, &payload);
        write(
            "frame",
            &format!("heartbeat-{i}-raw"),
            &[&[0][..], &frame].concat(),
        )?;
        let body = &frame[..frame.len() - TAG_LEN];
        write(
            "frame",
            &format!("heartbeat-{i}-signed"),
            &[&[1][..], body].concat(),
        )?;
    }
    for (i, ghb) in guest_heartbeats(&heartbeats).iter().enumerate() {
        let payload = postcard::to_allocvec(ghb).expect("encodes");
        write("guest_heartbeat", &format!("guest-heartbeat-{i}"), &payload)?;
        let frame = frame(Kind::GuestHeartbeat, 1, &payload);
        write(
            "frame",
            &format!("guest-heartbeat-{i}-raw"),
            &[&[0][..], &frame].concat(),
        )?;
    }

    let messages = link_messages();
    let mut signed_stream = vec![7, 1];
    let mut raw_stream = vec![0, 0];
    for (i, m) in messages.iter().enumerate() {
        let payload = m.to_payload();
        write("hostlink_message", &format!("message-{i}"), &payload)?;
        let frame = m.to_frame(KEY, CLUSTER_ID, 2, 1, i as u64 + 1);
        write(
            "frame",
            &format!("link-{i}-raw"),
            &[&[0][..], &frame].concat(),
        )?;
        raw_stream.extend_from_slice(&frame);
        if let Ok(len) = u8::try_from(payload.len()) {
            signed_stream.push(len);
            signed_stream.extend_from_slice(&payload);
        }
    }
    write("hostlink_stream", "signed-messages", &signed_stream)?;
    write("hostlink_stream", "raw-frames", &raw_stream)?;
    raw_stream[0] = 3;
    write("hostlink_stream", "raw-frames-in-3-byte-reads", &raw_stream)?;

    write("kdump", "notice", &notice_bytes())?;
    let mut be = KDUMP_MAGIC.to_be_bytes().to_vec();
    be.extend_from_slice(&KDUMP_VERSION.to_be_bytes());
    write("kdump", "notice-big-endian", &be)?;

    for (i, r) in requests().iter().enumerate() {
        let line = serde_json::to_string(r).expect("writes");
        write("admin_request", &format!("request-{i}"), line.as_bytes())?;
    }
    Ok(())
}

fn frame(kind: Kind, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        kind,
        cluster_id: CLUSTER_ID,
        sender: 2,
        incarnation: 1,
        sequence,
    };
    let out = wire::encode(&header, payload, KEY).expect("fits");
    debug_assert_eq!(out.len(), HEADER_LEN + payload.len() + TAG_LEN);
    out
}

fn host_heartbeats() -> Vec<Heartbeat> {
    let cfg = MembershipConfig {
        me: 2,
        hosts: (1..=3).map(|id| (id, format!("h{id}"), 1)).collect(),
        interconnects: 2,
        interval: Duration::from_millis(200),
        suspect_after: Duration::from_millis(600),
        dead_after: Duration::from_millis(1200),
        hung_limit: Duration::from_millis(3000),
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: 3,
            two_node: false,
            wait_for_all: false,
        },
        digest: [7; 16],
    };
    let from_machine = Membership::new(cfg, 5, Duration::from_secs(1)).heartbeat(1);
    let mut full = Heartbeat {
        interconnect: 0,
        watchdog: WatchdogVerdict::Slow {
            lateness_ms: 40,
            psi_percent: 12,
        },
        quorate: true,
        votes: 2,
        config_digest: [7; 16],
        domains_version: 9,
        view: vec![
            PeerView {
                node: 1,
                incarnation: 4,
                state: HostState::Up,
            },
            PeerView {
                node: 3,
                incarnation: 2,
                state: HostState::Failed(FailReason::Silent),
            },
        ],
        probe: vec![3],
        leaving: false,
        sections: Vec::new(),
    };
    let sections = HostSections {
        down: vec![DownRecord {
            target: 3,
            incarnation: 2,
            proof: Proof::PowerOff {
                devices: vec!["ipmi-h3".into()],
            },
            by: 2,
        }],
        guests: vec![GuestPresence {
            cluster: "db".into(),
            node_id: 1,
            node: "g1".into(),
            incarnation: 77,
        }],
        kill_orders: vec![KillOrder {
            id: 1,
            target_host: 1,
            cluster: "db".into(),
            node_id: 2,
        }],
        kill_answers: vec![KillAnswer {
            from_host: 1,
            id: 3,
            ok: true,
            detail: "destroyed".into(),
        }],
        domains: vec![DomainPresence {
            name: "db-g1".into(),
            uuid: "6f1c0e0a-1111-2222-3333-444455556666".into(),
            state: "Running".into(),
            memory_kib: 1 << 20,
            vcpus: 2,
        }],
        capacity: Some(HostCapacity {
            memory_kib: 16 << 20,
            cpus: 8,
        }),
        ha_plan: vec![HaAssignment {
            uuid: "u1".into(),
            name: "web".into(),
            host: 1,
        }],
        ha_failed: vec![HaFailure {
            uuid: "u2".into(),
            detail: "no room".into(),
        }],
        ha_lost: vec![HaLost {
            uuid: "u3".into(),
            name: "cache".into(),
            memory_kib: 1 << 19,
            vcpus: 1,
            priority: 2,
            from: 3,
        }],
        maintenance: true,
        failback: vec!["web".into()],
        ..HostSections::default()
    };
    sections.write(&mut full);
    vec![Heartbeat::default(), from_machine, full]
}

fn guest_heartbeats(host: &[Heartbeat]) -> Vec<GuestHeartbeat> {
    host.iter()
        .map(|membership| GuestHeartbeat {
            membership: membership.clone(),
            gossip: Gossip::default(),
            proofs: Vec::new(),
            migrating_ms: 0,
        })
        .collect()
}

fn link_messages() -> Vec<LinkMessage> {
    vec![
        LinkMessage::Register {
            cluster: "db".into(),
            node: "g1".into(),
            node_id: 1,
            domain: Some("db-g1".into()),
        },
        LinkMessage::Registered {
            host: "h1".into(),
            nonce: 0x1234_5678,
        },
        LinkMessage::Confirm { nonce: 0x1234_5678 },
        LinkMessage::Refused {
            reason: "unknown node".into(),
        },
        LinkMessage::HostDown {
            epoch: 3,
            host: "h3".into(),
            proof: "power-off".into(),
            guests: vec![(2, 42)],
        },
        LinkMessage::HostDownAck { epoch: 3 },
        LinkMessage::KillRequest {
            request: 9,
            cluster: "db".into(),
            node_id: 2,
        },
        LinkMessage::KillResult {
            request: 9,
            ok: false,
            detail: "its host is slow".into(),
            retry_after_ms: 500,
        },
        LinkMessage::MigrationPrepare {
            id: 4,
            hold_ms: 30_000,
        },
        LinkMessage::MigrationAnswer {
            id: 4,
            ok: true,
            detail: "holding".into(),
        },
        LinkMessage::MigrationEnd { id: 4 },
        LinkMessage::Keepalive,
        LinkMessage::Hello { host: "h2".into() },
    ]
}

fn requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::Events {
            since: Some(12),
            follow: true,
        },
        Request::Fence { host: "h3".into() },
        Request::ConfirmDown { host: "h3".into() },
        Request::FenceHistory,
        Request::FenceCheck,
        Request::VmStart { name: "web".into() },
        Request::VmStop {
            name: "web".into(),
            timeout_s: Some(60),
            force: false,
        },
        Request::HostMaintenance {
            host: "h2".into(),
            on: true,
        },
        Request::VmMigrate {
            name: "web".into(),
            to: "h2".into(),
            mode: MigrationMode::Live,
            max_downtime_ms: Some(300),
            timeout_s: None,
            leave_paused: false,
            start: false,
            dry_run: true,
        },
        Request::VmSuspend { name: "web".into() },
        Request::VmResume { name: "web".into() },
        Request::AppSwitch {
            app: "web".into(),
            node: Some("g2".into()),
        },
        Request::AppOnline { app: "web".into() },
        Request::AppOffline { app: "web".into() },
        Request::AppClear { app: "web".into() },
        Request::AppMaintenance {
            app: "web".into(),
            on: false,
        },
        Request::NodeDown { node: "g2".into() },
    ]
}
