//! The receiving task on real loopback sockets: a flood is dropped before any queue.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdSocket};
use std::time::Duration;

use hvcluster_common::config::Interconnect;
use hvcluster_common::membership::Heartbeat;
use hvcluster_common::wire::{self, Header, Kind};

use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const CLUSTER: u64 = 0xC1;

fn frame(key: &[u8], sequence: u64) -> Vec<u8> {
    let header = Header {
        kind: Kind::Heartbeat,
        cluster_id: CLUSTER,
        sender: 2,
        incarnation: 5,
        sequence,
    };
    let hb = Heartbeat {
        interconnect: 0,
        ..Heartbeat::default()
    };
    wire::encode(&header, &postcard::to_allocvec(&hb).unwrap(), key).unwrap()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn a_flood_ahead_of_a_heartbeat_leaves_only_the_heartbeat_queued() {
    let port = StdSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let interconnects = vec![Interconnect {
        name: "ic0".into(),
        port,
    }];
    let addrs: Vec<BTreeMap<String, IpAddr>> = (1..=2)
        .map(|i| BTreeMap::from([("ic0".to_string(), loopback(i))]))
        .collect();
    let members = vec![(1, "h1", &addrs[0]), (2, "h2", &addrs[1])];
    let roster = Roster::new(KEY.to_vec(), CLUSTER, "h1", &interconnects, members).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let sink = FrameSink {
        tx,
        counters: Counters::default(),
        events: EventLog::new("h1"),
    };
    let counters = sink.counters.clone();
    let mut tasks = Vec::new();
    let _outbox: Outbox<Heartbeat> = roster.open("heartbeat", sink, &mut tasks).unwrap();

    let to = SocketAddr::new(loopback(1), port);
    let rogue = StdSocket::bind((loopback(3), 0)).unwrap();
    let peer = StdSocket::bind((loopback(2), 0)).unwrap();
    for i in 0..300u32 {
        rogue.send_to(&i.to_le_bytes().repeat(16), to).unwrap();
        rogue.send_to(&frame(KEY, 1), to).unwrap();
        peer.send_to(&frame(b"not the cluster key at all......", 1), to)
            .unwrap();
    }
    peer.send_to(&frame(KEY, 1), to).unwrap();

    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the heartbeat arrives")
        .unwrap();
    assert_eq!(first.heartbeat.sender, 2);
    assert_eq!(first.from.ip(), loopback(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "nothing of the flood was queued");
    let counts = counters.snapshot();
    assert!(counts["frames_dropped_unknown_source"] > 0, "{counts:?}");
    assert!(counts["frames_dropped_bad_tag"] > 0, "{counts:?}");
    assert_eq!(counts["heartbeats_accepted"], 1);
    for t in tasks {
        t.abort();
    }
}
