//! The host link's limits before authentication: a frame's deadline, the registration's
//! deadline and the connection caps.

use std::time::Duration;

use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::link_admission::AdmissionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::limits::LinkLimits;
use super::server::serve_connection;
use super::*;
use crate::testing::{guest_cluster, link_key as key};

/// One byte every 3.9 s never lets a read wait the link's 4 s, but the frame is not
/// whole after 4 s: the reader gives up then, not never.
#[tokio::test(start_paused = true)]
async fn a_peer_that_trickles_bytes_is_cut_off_at_the_frame_deadline() {
    let (mut peer, ours) = tokio::io::duplex(4096);
    let frame = LinkMessage::Keepalive.to_frame(key("erp").key.as_bytes(), 1, 2, 3, 1);
    tokio::spawn(async move {
        for b in frame {
            if peer.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(3900)).await;
        }
        // Held open: only the reader's deadline ends it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut r = LinkReader::new(ours);
    let start = tokio::time::Instant::now();
    let got = r.next_raw().await;
    assert!(matches!(got, Err(LinkError::Silent)), "{got:?}");
    assert_eq!(start.elapsed(), LINK_TIMEOUT);
}

/// A peer sending whole frames on time is never cut by the frame deadline.
#[tokio::test(start_paused = true)]
async fn frames_that_arrive_whole_in_time_are_read() {
    let (mut peer, ours) = tokio::io::duplex(4096);
    let k = key("erp");
    let mut r = LinkReader::new(ours);
    for seq in 1..=5 {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let frame = LinkMessage::Keepalive.to_frame(k.key.as_bytes(), k.cluster_id, 2, 3, seq);
        peer.write_all(&frame).await.unwrap();
        let raw = r.next_raw().await.unwrap();
        assert_eq!(r.open(&raw, &k).unwrap().1, LinkMessage::Keepalive);
    }
}

/// A guest holding the key that registers but never confirms, sending a registration
/// again every 3 s (each one on time for the frame deadline), is cut off at the
/// registration deadline.
#[tokio::test(start_paused = true)]
async fn a_registration_that_never_completes_is_cut_off_at_its_deadline() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let (sr, sw) = tokio::io::split(server);
    let (mut cr, mut cw) = tokio::io::split(client);
    let k = key("erp");
    let register = |seq| {
        LinkMessage::Register {
            cluster: "erp".into(),
            node: "g2".into(),
            node_id: 2,
            domain: None,
        }
        .to_frame(k.key.as_bytes(), k.cluster_id, 2, 9, seq)
    };
    let frames: Vec<Vec<u8>> = (1..=100).map(register).collect();
    tokio::spawn(async move {
        for f in frames {
            if cw.write_all(&f).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    // Drain what the host answers.
    tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let (inputs, mut rx) = tokio::sync::mpsc::channel(8);
    let me = ServerIdentity {
        host: "h1".into(),
        node_id: 1,
        incarnation: 5,
        limits: LinkLimits {
            register_timeout: Duration::from_secs(10),
            ..LinkLimits::default()
        },
        // g2 is who it says it is: only the deadline can end this registration.
        guest_clusters: std::sync::Arc::new(vec![guest_cluster("erp", &[("g2", 2, "vm-g2")])]),
        ..ServerIdentity::default()
    };
    let start = tokio::time::Instant::now();
    let (guest, why) = serve_connection(
        sr,
        sw,
        1,
        std::slice::from_ref(&k),
        &me,
        &inputs,
        None,
        hvcluster_common::link_identity::Arrival::Tcp {
            source: std::net::Ipv4Addr::LOCALHOST.into(),
        },
    )
    .await;
    assert!(guest.is_none(), "{guest:?}");
    assert!(why.contains("register_timeout_ms"), "{why}");
    assert!(
        start.elapsed() <= Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(rx.try_recv().is_err(), "nothing registered");
}

/// Waits for the host to close `s`, at most `within`; true if it did.
async fn closed_by_host(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn connect_from(source: [u8; 4], to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Connections past the per-source cap, then past the total cap, are closed at once and
/// reported; those within the caps are held, and a place freed is taken again.
#[tokio::test]
async fn connections_past_the_caps_are_closed_at_once_and_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut inputs) = tokio::sync::mpsc::channel(16);
    let me = ServerIdentity {
        host: "h1".into(),
        node_id: 1,
        incarnation: 5,
        limits: LinkLimits {
            admission: AdmissionLimits {
                max_connections: 3,
                max_per_source: 2,
            },
            register_timeout: Duration::from_secs(60),
        },
        ..ServerIdentity::default()
    };
    tokio::spawn(serve(
        listener,
        std::sync::Arc::new(vec![key("erp")]),
        me,
        tx,
    ));
    let quick = Duration::from_secs(2);
    let mut a1 = connect_from([127, 0, 0, 1], addr).await;
    let mut a2 = connect_from([127, 0, 0, 1], addr).await;
    let mut a3 = connect_from([127, 0, 0, 1], addr).await;
    assert!(
        closed_by_host(&mut a3, quick).await,
        "third from one source"
    );
    let mut b1 = connect_from([127, 0, 0, 2], addr).await;
    let mut c1 = connect_from([127, 0, 0, 3], addr).await;
    assert!(closed_by_host(&mut c1, quick).await, "fourth in all");
    for (name, s) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        assert!(
            !closed_by_host(s, Duration::from_millis(300)).await,
            "{name} is within the caps"
        );
    }
    let report = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match inputs.recv().await {
                Some(LinkInput::Refused(t)) => return t,
                Some(_) => continue,
                None => panic!("server stopped"),
            }
        }
    })
    .await
    .expect("refusals are reported within a second or so");
    assert_eq!((report.per_source, report.total), (1, 1), "{report:?}");
    // A place freed is taken again.
    drop(a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a4 = connect_from([127, 0, 0, 1], addr).await;
    assert!(!closed_by_host(&mut a4, Duration::from_millis(300)).await);
}
