//! What a guest agent reports in answer to `status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::application::{AppState, ResourceState};
use crate::config::NodeId;

/// A guest node's state, in PRIMECLUSTER's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GuestNodeState {
    /// Alive and in the cluster.
    #[serde(rename = "UP")]
    Up,
    /// Known to be down (proved dead, or back with a new incarnation and not yet joined).
    #[serde(rename = "DOWN")]
    Down,
    /// Silent and not proved dead: whatever ran there may still run.
    #[serde(rename = "LEFTCLUSTER")]
    LeftCluster,
    /// Heard, not yet for long enough to count, or not heard yet since this agent started.
    #[serde(rename = "COMINGUP")]
    ComingUp,
}

impl std::fmt::Display for GuestNodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestNodeState::Up => "UP",
            GuestNodeState::Down => "DOWN",
            GuestNodeState::LeftCluster => "LEFTCLUSTER",
            GuestNodeState::ComingUp => "COMINGUP",
        })
    }
}

/// One guest node's view of its guest cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestStatus {
    /// Guest cluster name.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// This node's id.
    pub node_id: NodeId,
    /// This agent's incarnation.
    pub incarnation: u64,
    /// Milliseconds since the Unix epoch when this agent started.
    pub started_unix_ms: u64,
    /// The node that currently decides placement, in this node's view.
    pub coordinator: Option<String>,
    /// Every node of the guest cluster, this one included.
    pub nodes: Vec<GuestNodeLine>,
    /// Every application.
    pub applications: Vec<AppLine>,
    /// Counters: frames received and dropped by reason, operations run.
    pub counters: BTreeMap<String, u64>,
    /// The host whose agent this guest is linked to (the host link); none while
    /// unlinked or without a host link.
    #[serde(default)]
    pub host_link: Option<String>,
}

/// One node in a guest status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestNodeLine {
    /// Node name.
    pub name: String,
    /// Node id.
    pub node_id: NodeId,
    /// Whether this is the node answering.
    pub me: bool,
    /// Its state.
    pub state: GuestNodeState,
    /// Its incarnation as last heard (0 if never).
    pub incarnation: u64,
    /// Milliseconds since it was last heard, if ever.
    pub last_heard_ms: Option<u64>,
}

/// One application in a guest status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppLine {
    /// Application name.
    pub name: String,
    /// Its state on the node it runs on, or the best summary across nodes.
    pub state: AppState,
    /// The node it is Online on, if any.
    pub online_on: Option<String>,
    /// The node the current placement assigns it to, if any.
    pub target: Option<String>,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Its state on each node of its node list, in priority order.
    pub nodes: Vec<AppNodeLine>,
    /// Its resources as this node sees them, in dependency order.
    pub resources: Vec<ResourceLine>,
}

/// An application's state on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppNodeLine {
    /// Node name.
    pub node: String,
    /// State there (Unknown when the node is not heard).
    pub state: AppState,
    /// Why it is Faulted there, if it is.
    pub fault: Option<String>,
}

/// A resource as the local node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceLine {
    /// Resource name.
    pub name: String,
    /// Last known state here, if any operation or check ran.
    pub state: Option<ResourceState>,
    /// The operation running now, if any.
    pub running: Option<String>,
}
