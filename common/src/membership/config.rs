//! What the membership machine is configured with: identity, timings and vote rules.

use std::time::Duration;

use crate::config::{ClusterConfig, NodeId};
use crate::quorum::QuorumRules;

/// Timing and identity the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// This host's node id.
    pub me: NodeId,
    /// Every host: node id, name, weight.
    pub hosts: Vec<(NodeId, String, u32)>,
    /// Number of interconnects.
    pub interconnects: usize,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Silence before Suspect.
    pub suspect_after: Duration,
    /// Silence before Failed.
    pub dead_after: Duration,
    /// Reported hung for this long: Failed(hung).
    pub hung_limit: Duration,
    /// Consecutive heartbeats before a joining host is Up.
    pub rejoin_heartbeats: u32,
    /// Vote rules.
    pub quorum: QuorumRules,
    /// Configuration digest carried in heartbeats.
    pub digest: [u8; 16],
}

impl MembershipConfig {
    /// Builds the machine's configuration for host `me` from a validated cluster config.
    pub fn from_cluster(config: &ClusterConfig, me: NodeId, digest: [u8; 16]) -> Self {
        MembershipConfig {
            me,
            hosts: config
                .hosts
                .iter()
                .map(|h| (h.node_id, h.name.clone(), h.weight))
                .collect(),
            interconnects: config.interconnects.len(),
            interval: Duration::from_millis(config.heartbeat.interval_ms),
            suspect_after: Duration::from_millis(config.heartbeat.suspect_after_ms),
            dead_after: Duration::from_millis(config.heartbeat.dead_after_ms),
            hung_limit: Duration::from_millis(config.load_watchdog.hung_limit_ms),
            rejoin_heartbeats: config.heartbeat.rejoin_heartbeats,
            quorum: QuorumRules {
                total_votes: config.hosts.len() as u32,
                two_node: config.two_node(),
                wait_for_all: config.wait_for_all(),
            },
            digest,
        }
    }

    pub(super) fn priority(&self, node: NodeId) -> (u32, std::cmp::Reverse<&str>) {
        self.hosts
            .iter()
            .find(|h| h.0 == node)
            .map(|h| (h.2, std::cmp::Reverse(h.1.as_str())))
            .unwrap_or((0, std::cmp::Reverse("")))
    }
}
