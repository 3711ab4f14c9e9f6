use std::net::SocketAddr;
use std::time::Instant;

use hvcluster_common::application::{Gossip, GuestHeartbeat};
use hvcluster_common::membership::{Heartbeat, WatchdogVerdict};
use hvcluster_common::wire::{self, Accepted, Header, Kind};

use super::{ClusterKey, DropReason, FrameIntake};
use crate::counters::Counters;
use crate::events::EventLog;
use crate::net::Datagram;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const CLUSTER: u64 = 0xC1;
const ME: u32 = 1;
const PEER: u32 = 2;

fn heartbeat(interconnect: u8) -> Heartbeat {
    Heartbeat {
        interconnect,
        watchdog: WatchdogVerdict::Ok,
        quorate: true,
        votes: 2,
        config_digest: [7; 16],
        ..Heartbeat::default()
    }
}

/// A frame as a sender would seal it; `payload` is already encoded.
struct Sealed {
    kind: Kind,
    cluster_id: u64,
    sender: u32,
    incarnation: u64,
    sequence: u64,
    key: &'static [u8],
    payload: Vec<u8>,
}

impl Sealed {
    /// A heartbeat of `PEER` for interconnect 0, incarnation 5, sequence 1.
    fn good() -> Self {
        Sealed {
            kind: Kind::Heartbeat,
            cluster_id: CLUSTER,
            sender: PEER,
            incarnation: 5,
            sequence: 1,
            key: KEY,
            payload: postcard::to_allocvec(&heartbeat(0)).unwrap(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let header = Header {
            kind: self.kind,
            cluster_id: self.cluster_id,
            sender: self.sender,
            incarnation: self.incarnation,
            sequence: self.sequence,
        };
        wire::encode(&header, &self.payload, self.key).unwrap()
    }
}

/// An intake of host `ME` in a cluster of hosts 1, 2 and 3.
fn host_intake() -> FrameIntake<Heartbeat> {
    FrameIntake::new(ClusterKey::new(KEY.to_vec()), CLUSTER, ME, [1, 2, 3])
}

#[test]
fn accepts_a_heartbeat_of_a_configured_peer() {
    let mut intake = host_intake();
    let first = intake.admit(0, &Sealed::good().bytes()).unwrap();
    assert_eq!(first.sender, PEER);
    assert_eq!(first.incarnation, 5);
    assert_eq!(first.accepted, Accepted::First);
    assert_eq!(first.payload, heartbeat(0));
    let next = Sealed {
        sequence: 2,
        ..Sealed::good()
    };
    assert_eq!(
        intake.admit(0, &next.bytes()).unwrap().accepted,
        Accepted::Same
    );
}

#[test]
fn drops_each_bad_frame_for_its_reason() {
    // (what is wrong, bytes received on interconnect 0, reason); each case on an intake
    // that has already accepted `Sealed::good()`.
    let table: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("random bytes", vec![0x55; 100], DropReason::Malformed),
        ("too short", vec![0; 10], DropReason::Malformed),
        (
            "another key",
            Sealed {
                key: b"another key, sixteen bytes or more",
                sequence: 2,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::BadTag,
        ),
        (
            "another cluster",
            Sealed {
                cluster_id: 0xC2,
                sequence: 2,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::ForeignCluster,
        ),
        (
            "this host's own id",
            Sealed {
                sender: ME,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::UnknownSender,
        ),
        (
            "an unconfigured sender",
            Sealed {
                sender: 9,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::UnknownSender,
        ),
        (
            "a guest heartbeat",
            Sealed {
                kind: Kind::GuestHeartbeat,
                sequence: 2,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::UnknownKind,
        ),
        (
            "the same frame again",
            Sealed::good().bytes(),
            DropReason::Replayed,
        ),
        (
            "an earlier incarnation",
            Sealed {
                incarnation: 4,
                sequence: 9,
                ..Sealed::good()
            }
            .bytes(),
            DropReason::OldIncarnation,
        ),
        (
            "a payload that is no heartbeat",
            Sealed {
                sequence: 2,
                payload: vec![0xff; 3],
                ..Sealed::good()
            }
            .bytes(),
            DropReason::BadPayload,
        ),
        (
            "a heartbeat for interconnect 1",
            Sealed {
                sequence: 2,
                payload: postcard::to_allocvec(&heartbeat(1)).unwrap(),
                ..Sealed::good()
            }
            .bytes(),
            DropReason::WrongInterconnect,
        ),
    ];
    for (what, bytes, reason) in table {
        let mut intake = host_intake();
        intake.admit(0, &Sealed::good().bytes()).unwrap();
        assert_eq!(intake.admit(0, &bytes).unwrap_err(), reason, "{what}");
    }
}

#[test]
fn a_frame_of_another_kind_leaves_the_replay_window_alone() {
    let mut intake = host_intake();
    let guest = Sealed {
        kind: Kind::GuestHeartbeat,
        incarnation: 6,
        ..Sealed::good()
    };
    assert_eq!(
        intake.admit(0, &guest.bytes()),
        Err(DropReason::UnknownKind)
    );
    assert_eq!(
        intake.admit(0, &Sealed::good().bytes()).unwrap().accepted,
        Accepted::First
    );
}

#[test]
fn a_guest_intake_takes_guest_heartbeats_only() {
    let mut intake: FrameIntake<GuestHeartbeat> =
        FrameIntake::new(ClusterKey::new(KEY.to_vec()), CLUSTER, ME, [1, 2]);
    let guest = GuestHeartbeat {
        membership: heartbeat(0),
        gossip: Gossip::default(),
        proofs: Vec::new(),
        migrating_ms: 0,
    };
    let frame = Sealed {
        kind: Kind::GuestHeartbeat,
        payload: postcard::to_allocvec(&guest).unwrap(),
        ..Sealed::good()
    };
    assert_eq!(intake.admit(0, &frame.bytes()).unwrap().payload, guest);
    let host = Sealed {
        sequence: 2,
        ..Sealed::good()
    };
    assert_eq!(intake.admit(0, &host.bytes()), Err(DropReason::UnknownKind));
}

#[test]
fn receive_counts_and_reports_drops_once_per_period() {
    let mut intake = host_intake();
    let counters = Counters::default();
    let events = EventLog::new("h1");
    let from: SocketAddr = "10.10.0.9:5405".parse().unwrap();
    let datagram = |bytes: Vec<u8>| Datagram {
        ic: 0,
        from,
        at: Instant::now(),
        bytes,
    };
    assert!(intake
        .receive(&datagram(Sealed::good().bytes()), &counters, &events)
        .is_some());
    for _ in 0..3 {
        assert!(intake
            .receive(&datagram(vec![0; 10]), &counters, &events)
            .is_none());
    }
    let counts = counters.snapshot();
    assert_eq!(counts["frames_received"], 4);
    assert_eq!(counts["heartbeats_accepted"], 1);
    assert_eq!(counts["frames_dropped_malformed"], 3);
    let (_, history) = events.subscribe_with_history(0);
    assert_eq!(history.len(), 1, "{history:?}");
    let event = &history[0];
    assert_eq!(event.kind, "frame_dropped");
    assert_eq!(event.subject, None);
    assert_eq!(
        event.message,
        "dropped 1 frame(s) (malformed) since last report; latest from 10.10.0.9:5405"
    );
    assert_eq!(
        event.detail,
        serde_json::json!({ "reason": "malformed", "from": "10.10.0.9:5405", "count_since_last": 1 })
    );
}

#[test]
fn reasons_are_spelt_as_documented() {
    let all = [
        DropReason::BadTag,
        DropReason::ForeignCluster,
        DropReason::Malformed,
        DropReason::Version,
        DropReason::UnknownKind,
        DropReason::UnknownSender,
        DropReason::Replayed,
        DropReason::OldIncarnation,
        DropReason::BadPayload,
        DropReason::WrongInterconnect,
    ];
    let spelt: Vec<String> = all.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        spelt.join(" "),
        "bad_tag foreign_cluster malformed version unknown_kind unknown_sender replayed \
         old_incarnation bad_payload wrong_interconnect"
    );
}
