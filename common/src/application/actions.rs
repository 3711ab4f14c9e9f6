//! What the engine asks its driver to do, what it keeps across restarts, and the
//! operator's commands.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AppState, OfflineReason, OpKind, Placement, PlacementReason, Version};
use crate::config::NodeId;

/// A resource operation the driver must run and answer with
/// [`Engine::on_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOp {
    /// Identifies the answer.
    pub id: u64,
    /// Application index.
    pub app: usize,
    /// Resource index within the application.
    pub resource: usize,
    /// What to do.
    pub kind: OpKind,
    /// For a stop: why (`HV_OFFLINE_REASON`).
    pub reason: Option<OfflineReason>,
    /// Part of an automatic restart (`HV_AUTORECOVER`).
    pub auto_recover: bool,
}

/// Something that happened to an application, for logs, status and the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppEvent {
    /// Its state on this node changed.
    State {
        /// Application.
        app: String,
        /// Before.
        from: AppState,
        /// After.
        to: AppState,
    },
    /// A new placement was written or adopted.
    Placement {
        /// Application.
        app: String,
        /// Node it should run on.
        target: Option<NodeId>,
        /// Why.
        reason: PlacementReason,
        /// Its version.
        version: Version,
        /// Written by this node (rather than learnt from a peer).
        written_here: bool,
    },
    /// A resource failed here.
    ResourceFault {
        /// Application.
        app: String,
        /// Resource.
        resource: String,
        /// What failed.
        detail: String,
        /// What the engine does about it.
        action: String,
    },
    /// An operation failed here.
    OpFailed {
        /// Application.
        app: String,
        /// Resource.
        resource: String,
        /// Operation.
        op: OpKind,
        /// What happened.
        detail: String,
    },
    /// The application should start or move but cannot yet.
    Waiting {
        /// Application.
        app: String,
        /// Why.
        why: String,
    },
    /// HaltFlag: a node whose stop failed must be killed before the application moves.
    KillRequested {
        /// Application.
        app: String,
        /// Node to kill.
        node: NodeId,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppAction {
    /// Run this operation and answer with [`Engine::on_result`].
    Run(ResourceOp),
    /// Report this event.
    Event(AppEvent),
    /// Save [`Engine::persistent`] (placements, persistent faults).
    Persist,
    /// Send heartbeats now: something peers wait for changed.
    Announce,
    /// Have this node killed (HaltFlag), then prove it down.
    KillNode(NodeId),
}

/// What survives an agent restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistent {
    /// Placements by application name.
    pub placements: BTreeMap<String, Placement>,
    /// PersistentFault applications Faulted here, by name: the cause and the clear
    /// generation it was recorded under.
    pub faults: BTreeMap<String, (String, u64)>,
}

/// An operator command for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Switch to a node, or to the best other node.
    Switch(Option<NodeId>),
    /// Bring Online on the best node.
    Online,
    /// Take Offline everywhere.
    Offline,
    /// Clear faults.
    Clear,
    /// Maintenance on or off.
    Maintenance(bool),
}
