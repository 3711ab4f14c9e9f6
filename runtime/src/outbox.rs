//! Heartbeat outbox, shared by the host and the guest agent: seals a heartbeat into one
//! frame per peer and sends it on one interconnect.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use hvcluster_common::config::NodeId;
use hvcluster_common::wire::{self, Header};
use tokio::net::UdpSocket;

use crate::intake::{ClusterKey, HeartbeatPayload};

/// A peer and its address on each interconnect, by interconnect index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    /// The peer.
    pub id: NodeId,
    /// Where it listens, one address per interconnect.
    pub addrs: Vec<SocketAddr>,
}

/// A frame that could not be handed to the network.
#[derive(Debug)]
pub struct SendFailure {
    /// The peer it was for.
    pub peer: NodeId,
    /// Its address on that interconnect.
    pub to: SocketAddr,
    /// What the socket said.
    pub cause: std::io::Error,
}

/// What one [`Outbox::send`] did.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Frames handed to the network.
    pub sent: u64,
    /// Frames that could not be.
    pub failed: Vec<SendFailure>,
    /// Why the heartbeat could not be made into a frame at all (nothing was sent).
    pub unsendable: Option<String>,
}

/// Sends heartbeats `P` of node `me`: owns the cluster key and id, one socket per
/// interconnect, the peers' routes and the next sequence number per peer.
#[derive(Debug)]
pub struct Outbox<P> {
    key: ClusterKey,
    cluster_id: u64,
    me: NodeId,
    sockets: Vec<Arc<UdpSocket>>,
    routes: Vec<PeerRoute>,
    /// Next sequence number per receiving peer, so a frame sent to one peer cannot be
    /// replayed to another inside its window.
    sequences: HashMap<NodeId, u64>,
    payload: PhantomData<fn(&P)>,
}

impl<P: HeartbeatPayload> Outbox<P> {
    /// An outbox sending over `sockets` (one per interconnect, in order) to `routes`.
    pub fn new(
        key: ClusterKey,
        cluster_id: u64,
        me: NodeId,
        sockets: Vec<Arc<UdpSocket>>,
        routes: Vec<PeerRoute>,
    ) -> Self {
        Outbox {
            key,
            cluster_id,
            me,
            sockets,
            routes,
            sequences: HashMap::new(),
            payload: PhantomData,
        }
    }

    /// How many interconnects there are.
    pub fn interconnects(&self) -> usize {
        self.sockets.len()
    }

    /// Starts the sequence numbers afresh, for a new incarnation.
    pub fn restart(&mut self) {
        self.sequences.clear();
    }

    /// Sends `heartbeat` of incarnation `incarnation` to every peer on interconnect
    /// `ic`, each frame with that peer's next sequence number. A heartbeat that cannot
    /// be made into a frame (too large) is not sent at all: the report says why, for
    /// the caller's alarm.
    pub fn send(&mut self, ic: usize, incarnation: u64, heartbeat: &P) -> SendReport {
        let mut report = SendReport::default();
        let payload = match postcard::to_allocvec(heartbeat) {
            Ok(p) if p.len() > wire::MAX_PAYLOAD => {
                report.unsendable = Some(format!(
                    "the heartbeat is {} bytes, more than the {} a frame holds",
                    p.len(),
                    wire::MAX_PAYLOAD
                ));
                return report;
            }
            Ok(p) => p,
            Err(e) => {
                report.unsendable = Some(format!("the heartbeat does not encode: {e}"));
                return report;
            }
        };
        for route in &self.routes {
            let sequence = self.sequences.entry(route.id).or_insert(0);
            *sequence += 1;
            let header = Header {
                kind: P::KIND,
                cluster_id: self.cluster_id,
                sender: self.me,
                incarnation,
                sequence: *sequence,
            };
            let frame = match wire::encode(&header, &payload, self.key.as_bytes()) {
                Ok(frame) => frame,
                Err(e) => {
                    report.unsendable = Some(format!("the heartbeat frame is refused: {e:?}"));
                    return report;
                }
            };
            let to = route.addrs[ic];
            match self.sockets[ic].try_send_to(&frame, to) {
                Ok(_) => report.sent += 1,
                Err(cause) => report.failed.push(SendFailure {
                    peer: route.id,
                    to,
                    cause,
                }),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvcluster_common::heartbeat_budget::{fit, BUDGET};
    use hvcluster_common::host_heartbeat::HostSections;
    use hvcluster_common::hostlink::KillOrder;
    use hvcluster_common::membership::Heartbeat;

    async fn outbox() -> (Outbox<Heartbeat>, UdpSocket) {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        me.writable().await.unwrap();
        let routes = vec![PeerRoute {
            id: 2,
            addrs: vec![peer.local_addr().unwrap()],
        }];
        let key = ClusterKey::new(b"0123456789abcdef0123456789abcdef".to_vec());
        (Outbox::new(key, 7, 1, vec![Arc::new(me)], routes), peer)
    }

    /// Kill orders a flood of guest requests would pile up: more than a frame holds.
    fn flooded() -> (Heartbeat, HostSections) {
        let sections = HostSections {
            kill_orders: (0..5000)
                .map(|id| KillOrder {
                    id,
                    target_host: 2,
                    cluster: "guests-of-a-long-name".into(),
                    node_id: 2,
                })
                .collect(),
            ..HostSections::default()
        };
        let mut hb = Heartbeat::default();
        sections.write(&mut hb);
        (hb, sections)
    }

    /// A heartbeat too large for a frame is reported, not dropped in silence; fitted to
    /// its budget first, it goes out.
    #[tokio::test]
    async fn an_oversized_heartbeat_is_reported_and_a_fitted_one_is_sent() {
        let (mut out, peer) = outbox().await;
        let (mut hb, mut sections) = flooded();
        let report = out.send(0, 1, &hb);
        assert_eq!(report.sent, 0);
        let why = report.unsendable.expect("the failure is reported");
        assert!(why.contains("more than the"), "{why}");
        fit(&mut hb, &mut sections, BUDGET);
        let report = out.send(0, 1, &hb);
        assert_eq!((report.sent, report.unsendable), (1, None));
        let mut buf = vec![0u8; 70_000];
        let n = peer.recv(&mut buf).await.unwrap();
        assert!(n <= wire::MAX_FRAME);
    }
}
