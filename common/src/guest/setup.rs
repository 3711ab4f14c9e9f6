//! What a [`GuestCore`](super::GuestCore) starts from.

use std::time::Duration;

use crate::application::{AppSpec, Persistent};
use crate::config::guest::{GuestConfig, HostLinkTransport};
use crate::config::NodeId;
use crate::membership::MembershipConfig;
use crate::quorum::QuorumRules;

/// Everything the guest core is started with.
#[derive(Debug, Clone)]
pub struct GuestSetup {
    /// The guest cluster's name.
    pub cluster: String,
    /// Membership timings and identity; its hosts name every node.
    pub membership: MembershipConfig,
    /// Silence after which a node is LEFTCLUSTER.
    pub dead_after: Duration,
    /// The applications.
    pub specs: Vec<AppSpec>,
    /// The saved application state.
    pub state: Persistent,
    /// Why the saved state could not be read, if it could not.
    pub state_problem: Option<String>,
    /// This agent's incarnation.
    pub incarnation: u64,
    /// Whether a host link is configured.
    pub host_link: bool,
}

impl GuestSetup {
    /// The setup of node `me` of `config` (whose digest is `digest`), with the saved
    /// `state` and its incarnation.
    pub fn from_config(
        config: &GuestConfig,
        me: NodeId,
        digest: [u8; 16],
        state: Persistent,
        incarnation: u64,
    ) -> GuestSetup {
        let id_of = |n: &str| config.node(n).map(|n| n.node_id);
        GuestSetup {
            cluster: config.cluster.name.clone(),
            membership: membership_config(config, me, digest),
            dead_after: Duration::from_millis(config.heartbeat.dead_after_ms),
            specs: AppSpec::from_applications(&config.applications, id_of),
            state,
            state_problem: None,
            incarnation,
            host_link: config.host_link.transport != HostLinkTransport::None,
        }
    }
}

/// Membership timings and identity for a guest node.
fn membership_config(config: &GuestConfig, me: NodeId, digest: [u8; 16]) -> MembershipConfig {
    let two_node = config.nodes.len() == 2;
    MembershipConfig {
        me,
        hosts: config
            .nodes
            .iter()
            .map(|n| (n.node_id, n.name.clone(), 1))
            .collect(),
        interconnects: config.interconnects.len(),
        interval: Duration::from_millis(config.heartbeat.interval_ms),
        suspect_after: Duration::from_millis(config.heartbeat.suspect_after_ms),
        dead_after: Duration::from_millis(config.heartbeat.dead_after_ms),
        hung_limit: Duration::from_millis(config.heartbeat.dead_after_ms),
        rejoin_heartbeats: config.heartbeat.rejoin_heartbeats,
        quorum: QuorumRules {
            total_votes: config.nodes.len() as u32,
            two_node,
            wait_for_all: two_node,
        },
        digest,
    }
}
