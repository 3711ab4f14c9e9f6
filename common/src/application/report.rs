//! What a node tells of its applications: its activity and state per application, the
//! gossip it sends and the views an operator reads.

use serde::{Deserialize, Serialize};

use super::{OpKind, Placement, ResourceState, Version};
use crate::config::NodeId;

/// An application's state on one node (RMS's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppState {
    /// Every resource is Online here.
    Online,
    /// Not running here.
    Offline,
    /// Hot standby here.
    Standby,
    /// Failed here; cleared by `hvctl app clear` (or by itself unless PersistentFault).
    Faulted,
    /// In transition: resources are being started or stopped.
    Wait,
    /// Maintenance mode: no automatic action.
    Maintenance,
    /// Deactivated.
    Deact,
    /// Resources disagree: some Online, some not, outside a transition.
    Inconsistent,
    /// Running with a warning from a check.
    Warning,
    /// Not known: the node is not heard.
    Unknown,
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What a node reports about an application, in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Finding out, after the agent started, whether its resources run.
    Probing,
    /// Not running.
    Offline,
    /// Starting.
    Starting,
    /// Running.
    Online,
    /// Stopping.
    Stopping,
    /// Hot standby.
    Standby,
    /// Failed; `clean` when every resource was stopped afterwards.
    Faulted {
        /// Every resource stopped after the fault.
        clean: bool,
    },
    /// Some resources run outside a transition.
    Inconsistent,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Activity::Probing => "Probing",
            Activity::Offline => "Offline",
            Activity::Starting => "Starting",
            Activity::Online => "Online",
            Activity::Stopping => "Stopping",
            Activity::Standby => "Standby",
            Activity::Faulted { clean: true } => "Faulted (stopped)",
            Activity::Faulted { clean: false } => "Faulted (its stop failed)",
            Activity::Inconsistent => "Inconsistent",
        })
    }
}

impl Activity {
    /// Whether nothing of the application can be running (Standby resources are the
    /// hot-standby kind, allowed beside an Online node).
    pub fn inactive(self) -> bool {
        matches!(
            self,
            Activity::Offline | Activity::Standby | Activity::Faulted { clean: true }
        )
    }
}

/// One node's report about one application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReport {
    /// What runs there.
    pub activity: Activity,
    /// The highest placement version the node has applied.
    pub seen: Version,
    /// Why it is Faulted, if it is.
    pub fault: Option<String>,
    /// Maintenance mode as that node applies it.
    pub maintenance: bool,
    /// Its agent is shutting down: do not place anything there.
    pub leaving: bool,
}

/// What the engine gossips in every heartbeat (one entry per application, in
/// configuration order; the configuration digest guarantees the same order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// The placements known.
    pub placements: Vec<Placement>,
    /// This node's report per application.
    pub reports: Vec<AppReport>,
    /// Nodes this node holds proved dead. A node that reads itself here restarted
    /// since it died, and the sender has not heard it since: the sender may start its
    /// applications at any time, so its reports acknowledge nothing to that node.
    pub held_down: Vec<NodeId>,
}

/// One application as one node sees it, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct AppView {
    /// Application name.
    pub name: String,
    /// This node's local state.
    pub local: AppState,
    /// Each node of the application with its state there.
    pub per_node: Vec<(NodeId, AppState, Option<String>)>,
    /// The placement.
    pub placement: Placement,
    /// Each resource's last known state here and the operation running, if any.
    pub resources: Vec<(String, Option<ResourceState>, Option<OpKind>)>,
}

/// The state a report shows.
pub(super) fn shown_state(r: &AppReport) -> AppState {
    match r.activity {
        Activity::Probing | Activity::Starting | Activity::Stopping => AppState::Wait,
        Activity::Offline => AppState::Offline,
        Activity::Online => AppState::Online,
        Activity::Standby => AppState::Standby,
        Activity::Faulted { .. } => AppState::Faulted,
        Activity::Inconsistent => AppState::Inconsistent,
    }
}
