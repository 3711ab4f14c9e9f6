//! The status snapshot of the guest agent.

use hvcluster_common::admin::{GuestNodeLine, GuestNodeState, GuestStatus};
use hvcluster_common::config::NodeId;
use hvcluster_runtime::apps::app_lines;

use crate::agent::Agent;

/// The agent's answer to `status`.
pub fn status(agent: &Agent) -> GuestStatus {
    let (config, me, node, membership, nodes, engine, counters, started_unix_ms, now) =
        agent.parts();
    let name = |id: NodeId| {
        config
            .node_by_id(id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("node {id}"))
    };
    let peers = membership.peers(now);
    let views = nodes.views();
    let node_lines = config
        .nodes
        .iter()
        .map(|n| {
            if n.node_id == me {
                return GuestNodeLine {
                    name: n.name.clone(),
                    node_id: n.node_id,
                    me: true,
                    state: GuestNodeState::Up,
                    incarnation: membership.incarnation(),
                    last_heard_ms: Some(0),
                };
            }
            let peer = peers.iter().find(|p| p.node == n.node_id);
            let view = views.iter().find(|v| v.id == n.node_id);
            GuestNodeLine {
                name: n.name.clone(),
                node_id: n.node_id,
                me: false,
                state: view.map(|v| v.state).unwrap_or(GuestNodeState::ComingUp),
                incarnation: peer.and_then(|p| p.incarnation).unwrap_or(0),
                last_heard_ms: peer.and_then(|p| p.silent_for_ms),
            }
        })
        .collect();
    let applications = app_lines(engine, name);
    GuestStatus {
        cluster: config.cluster.name.clone(),
        node: node.to_string(),
        node_id: me,
        incarnation: membership.incarnation(),
        started_unix_ms,
        coordinator: Some(name(engine.coordinator())),
        nodes: node_lines,
        applications,
        counters: counters.snapshot(),
        host_link: None,
    }
}
