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
    /// `ic`, each frame with that peer's next sequence number. A heartbeat too large for
    /// a frame is not sent at all.
    pub fn send(&mut self, ic: usize, incarnation: u64, heartbeat: &P) -> SendReport {
        let mut report = SendReport::default();
        let Ok(payload) = postcard::to_allocvec(heartbeat) else {
            return report;
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
            let Ok(frame) = wire::encode(&header, &payload, self.key.as_bytes()) else {
                continue;
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
