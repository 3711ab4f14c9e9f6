//! A DOWN record (a host declared down, with its proof) and fencing's heartbeat section:
//! the hosts the sender holds DOWN, repeated in every heartbeat so every survivor learns
//! them even across message loss.

use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::membership::section::record_list_section;

/// What proves a host is down.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// These fence devices powered it off and confirmed it.
    PowerOff {
        /// Devices of the level that succeeded.
        devices: Vec<String>,
    },
    /// Its crash kernel sent a panic notice and a kdump level accepts that.
    KdumpNotice,
    /// An operator confirmed it is off.
    Operator,
}

/// A host declared down, as journaled and shared with peers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DownRecord {
    /// The host.
    pub target: NodeId,
    /// Its incarnation when it failed (0 if never heard).
    pub incarnation: u64,
    /// What proves it.
    pub proof: Proof,
    /// The host that obtained the proof.
    pub by: NodeId,
}

/// Fencing's heartbeat section: the DOWN records the sender holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Downs(pub Vec<DownRecord>);

record_list_section!(Downs, 1, "down");
