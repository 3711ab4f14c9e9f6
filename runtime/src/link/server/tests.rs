//! Registration over a real TCP connection: who a guest may say it is.

use super::*;
use crate::link::{LinkReader, LinkWriter};
use crate::testing::{guest_cluster, link_key as key};
use hvcluster_common::config::GuestClusterEntry;

/// Guest cluster `name` with members g1 (domain `NAME-vm1`) and g2 (`NAME-vm2`).
pub(in crate::link) fn members(name: &str) -> GuestClusterEntry {
    let (vm1, vm2) = (format!("{name}-vm1"), format!("{name}-vm2"));
    guest_cluster(name, &[("g1", 1, &vm1), ("g2", 2, &vm2)])
}

/// A host serving guest clusters erp and crm on a loopback port.
async fn host() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<LinkInput>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, inputs) = tokio::sync::mpsc::channel(16);
    let me = ServerIdentity {
        host: "h1".into(),
        node_id: 1,
        incarnation: 5,
        guest_clusters: std::sync::Arc::new(vec![members("erp"), members("crm")]),
        ..ServerIdentity::default()
    };
    tokio::spawn(serve(
        listener,
        std::sync::Arc::new(vec![key("erp"), key("crm")]),
        me,
        tx,
    ));
    (addr, inputs)
}

/// Registers as `node` (`node_id`) of `cluster` claiming `domain`; returns the host's
/// first answer.
async fn register(
    addr: std::net::SocketAddr,
    cluster: &str,
    node: &str,
    node_id: u32,
    domain: Option<&str>,
) -> LinkMessage {
    let k = key(cluster);
    let (r, w) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    let mut reader = LinkReader::new(r);
    let mut writer = LinkWriter::new(w, k.clone(), node_id, 9);
    writer
        .send(&LinkMessage::Register {
            cluster: cluster.into(),
            node: node.into(),
            node_id,
            domain: domain.map(str::to_string),
        })
        .await
        .unwrap();
    let answer = reader.next(&k).await.unwrap().1;
    if let LinkMessage::Registered { nonce, .. } = answer {
        writer.send(&LinkMessage::Confirm { nonce }).await.unwrap();
    }
    answer
}

/// A guest of crm claiming erp's domain, a partner's node name under its own id, or a
/// name no member has, is refused and the agent told; a member as configured registers
/// with the domain the host has for it, whatever it leaves out.
#[tokio::test]
async fn registrations_claiming_what_the_host_does_not_know_are_refused() {
    let (addr, mut inputs) = host().await;
    for (node, node_id, domain) in [
        ("g2", 2, Some("erp-vm1")),
        ("g1", 2, None),
        ("db9", 9, Some("crm-vm2")),
    ] {
        let answer = register(addr, "crm", node, node_id, domain).await;
        assert!(
            matches!(answer, LinkMessage::Refused { .. }),
            "{node} {node_id} {domain:?}: {answer:?}"
        );
        match inputs.recv().await {
            Some(LinkInput::ClaimRefused {
                cluster, reason, ..
            }) => assert_eq!(cluster, "crm", "{reason}"),
            other => panic!("{node}: not reported refused: {other:?}"),
        }
        assert!(matches!(
            inputs.recv().await,
            Some(LinkInput::Closed { .. })
        ));
    }
    let answer = register(addr, "crm", "g2", 2, None).await;
    assert!(
        matches!(answer, LinkMessage::Registered { .. }),
        "{answer:?}"
    );
    match inputs.recv().await {
        Some(LinkInput::Registered {
            cluster,
            node,
            domain,
            ..
        }) => assert_eq!(
            (cluster.as_str(), node.as_str(), domain.as_deref()),
            ("crm", "g2", Some("crm-vm2"))
        ),
        other => panic!("not registered: {other:?}"),
    }
}
