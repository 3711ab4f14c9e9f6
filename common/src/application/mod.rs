//! The userApplication engine, as a pure state machine.

pub mod outcome;
pub mod spec;

use serde::{Deserialize, Serialize};

pub use outcome::{OfflineReason, OpKind, OpOutcome, ResourceState};
pub use spec::{AppSpec, ResourceSpec};

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
