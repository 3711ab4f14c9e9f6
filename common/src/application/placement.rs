//! The replicated placement register: where an application should run, its version and
//! why it was written.

use serde::{Deserialize, Serialize};

use crate::config::NodeId;

/// Version of a placement: later epochs win; the issuer breaks ties.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// Grows with every new placement.
    pub epoch: u64,
    /// The node that wrote it.
    pub issuer: NodeId,
}

/// Why a placement was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementReason {
    /// Never placed.
    #[default]
    None,
    /// AutoStartUp when the cluster came up.
    Startup,
    /// An operator's switch or online.
    Operator,
    /// An operator's offline.
    Offline,
    /// A resource failed on the node it ran on.
    ResourceFailure,
    /// The node it ran on was proved dead.
    HostFailure,
    /// The agent on the node it ran on shut down.
    ShutDown,
    /// An operator cleared a fault.
    Clear,
    /// An operator switched maintenance mode.
    Maintenance,
}

/// Where an application should run: the replicated register every node gossips.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Its version; the highest known wins.
    pub version: Version,
    /// The node that should run it; none means Offline everywhere.
    pub target: Option<NodeId>,
    /// Maintenance mode: no automatic action anywhere.
    pub maintenance: bool,
    /// Fault-clear generation: faults recorded under a smaller one are cleared.
    pub clear: u64,
    /// Why it was written.
    pub reason: PlacementReason,
    /// The node it was last Online on, for OnlinePriority.
    pub last_online: Option<NodeId>,
}
