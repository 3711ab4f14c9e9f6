//! Guest node states (UP, DOWN, LEFTCLUSTER, COMINGUP) on top of the membership machine.
//!
//! The membership machine says who is heard; this layer adds what only proof can say:
//! a silent node is LEFTCLUSTER (whatever ran there may still run) until its death is
//! proved, by an operator's `hvctl node down` or (with the host link) by its host.
//! Proof is recorded per incarnation, so a node that restarts is judged by what its
//! new incarnation reports: LEFTCLUSTER → DOWN when it is heard again with a new
//! incarnation, then UP once it has joined.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admin::GuestNodeState;
use crate::config::NodeId;
use crate::membership::{HostState, PeerStatus};

/// Proof that a node's incarnation is dead, carried in every guest heartbeat so every
/// node that heard that incarnation learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DownProof {
    /// The node.
    pub node: NodeId,
    /// Its last incarnation known when it was proved dead (0 if never heard).
    pub incarnation: u64,
}

/// What the engine needs to know about another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub id: NodeId,
    /// Its state.
    pub state: GuestNodeState,
    /// Heard now (joining or member): its reports describe it.
    pub heard: bool,
    /// Proved dead and not heard since: nothing runs there.
    pub proved_down: bool,
    /// Its incarnation as last heard (0 if never).
    pub incarnation: u64,
}

/// A node changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChange {
    /// The node.
    pub node: NodeId,
    /// Previous state.
    pub from: GuestNodeState,
    /// New state.
    pub to: GuestNodeState,
}

#[derive(Debug, Clone)]
struct Tracked {
    id: NodeId,
    state: GuestNodeState,
    incarnation: u64,
    proof: Option<u64>,
    /// Declared LEFTCLUSTER or DOWN since it was last UP: a return goes through DOWN.
    was_lost: bool,
    heard: bool,
}

/// Node states of every other node of the guest cluster.
#[derive(Debug, Clone)]
pub struct GuestNodes {
    nodes: Vec<Tracked>,
    dead_after: Duration,
}

impl GuestNodes {
    /// Every node but `me` starts COMINGUP (not heard yet).
    pub fn new(me: NodeId, ids: &[NodeId], dead_after: Duration) -> Self {
        GuestNodes {
            nodes: ids
                .iter()
                .filter(|&&id| id != me)
                .map(|&id| Tracked {
                    id,
                    state: GuestNodeState::ComingUp,
                    incarnation: 0,
                    proof: None,
                    was_lost: false,
                    heard: false,
                })
                .collect(),
            dead_after,
        }
    }

    /// Recomputes every node's state from the membership's peers; returns the changes
    /// in order (a return from LEFTCLUSTER shows as LEFTCLUSTER → DOWN, then DOWN → UP).
    pub fn update(&mut self, peers: &[PeerStatus]) -> Vec<NodeChange> {
        let mut out = Vec::new();
        for p in peers {
            let Some(t) = self.nodes.iter_mut().find(|t| t.id == p.node) else {
                continue;
            };
            let incarnation = p.incarnation.unwrap_or(0);
            let new_incarnation = incarnation > t.incarnation;
            if new_incarnation {
                t.incarnation = incarnation;
            }
            // A proof covers the incarnation it names; a newer one is judged anew.
            if t.proof.is_some_and(|i| incarnation > i) {
                t.proof = None;
            }
            let (state, heard) = match p.state {
                HostState::Up | HostState::Suspect => (GuestNodeState::Up, true),
                HostState::Joining if t.was_lost => (GuestNodeState::Down, true),
                HostState::Joining => (GuestNodeState::ComingUp, true),
                HostState::Unknown if t.proof.is_some() => (GuestNodeState::Down, false),
                HostState::Unknown => (GuestNodeState::ComingUp, false),
                HostState::Failed(_) if t.proof.is_some() => (GuestNodeState::Down, false),
                HostState::Failed(_) => (GuestNodeState::LeftCluster, false),
                // A node says it leaves only once what it ran is stopped: nothing runs
                // there, as after a proof.
                HostState::Left => (GuestNodeState::Down, false),
            };
            t.heard = heard;
            if state == t.state {
                continue;
            }
            if state == GuestNodeState::Up && t.was_lost && t.state != GuestNodeState::Down {
                // Back from LEFTCLUSTER without a visible Joining phase: still via DOWN.
                out.push(NodeChange {
                    node: t.id,
                    from: t.state,
                    to: GuestNodeState::Down,
                });
                t.state = GuestNodeState::Down;
            }
            match state {
                GuestNodeState::LeftCluster | GuestNodeState::Down => t.was_lost = true,
                GuestNodeState::Up => t.was_lost = false,
                GuestNodeState::ComingUp => {}
            }
            out.push(NodeChange {
                node: t.id,
                from: t.state,
                to: state,
            });
            t.state = state;
        }
        out
    }

    /// Records proof that `node` is dead (its incarnation `incarnation`). Returns the
    /// change it makes, if any. A proof for an older incarnation than the one heard is
    /// ignored, and so is a proof of a node not heard since this agent started, unless
    /// it is the operator's word (incarnation 0): that node may have restarted since it
    /// died, unheard here, and would then be taken for dead while it runs.
    pub fn prove_down(&mut self, proof: DownProof) -> Option<NodeChange> {
        let t = self.nodes.iter_mut().find(|t| t.id == proof.node)?;
        if proof.incarnation < t.incarnation || t.proof.is_some_and(|i| i >= proof.incarnation) {
            return None;
        }
        if t.incarnation == 0 && proof.incarnation != 0 {
            return None;
        }
        t.proof = Some(proof.incarnation);
        let unheard = t.state == GuestNodeState::ComingUp && !t.heard;
        if t.state == GuestNodeState::LeftCluster || unheard {
            let from = t.state;
            t.was_lost = true;
            t.state = GuestNodeState::Down;
            return Some(NodeChange {
                node: t.id,
                from,
                to: GuestNodeState::Down,
            });
        }
        None
    }

    /// Why `node` may not be marked down by an operator now, if it may not.
    pub fn refuse_down(&self, node: NodeId, peer: Option<&PeerStatus>) -> Option<String> {
        let t = self.nodes.iter().find(|t| t.id == node)?;
        let heard_recently = peer
            .and_then(|p| p.silent_for_ms)
            .is_some_and(|ms| Duration::from_millis(ms) < self.dead_after);
        match t.state {
            GuestNodeState::Down => Some("it is already DOWN".into()),
            GuestNodeState::Up | GuestNodeState::ComingUp if t.heard => {
                Some("it is heard alive (its heartbeats arrive)".into())
            }
            _ if heard_recently || peer.is_some_and(|p| p.must_rejoin) => {
                Some("its heartbeats still arrive".into())
            }
            _ => None,
        }
    }

    /// The view of every other node, for the engine.
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|t| NodeView {
                id: t.id,
                state: t.state,
                heard: t.heard,
                proved_down: t.proof.is_some() && !t.heard,
                incarnation: t.incarnation,
            })
            .collect()
    }

    /// State of `node` (`None` for unknown ids and for this node).
    pub fn state_of(&self, node: NodeId) -> Option<GuestNodeState> {
        self.nodes.iter().find(|t| t.id == node).map(|t| t.state)
    }

    /// Every proof held, for heartbeats; not the operator's word about a node never
    /// heard (incarnation 0): it holds only where it was given, for the same reason as
    /// in [`GuestNodes::prove_down`].
    pub fn proofs(&self) -> Vec<DownProof> {
        self.nodes
            .iter()
            .filter_map(|t| {
                t.proof.filter(|&i| i > 0).map(|incarnation| DownProof {
                    node: t.id,
                    incarnation,
                })
            })
            .collect()
    }
}
