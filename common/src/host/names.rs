//! Host names by node id, for the wording of events and notices.

use std::collections::BTreeMap;

use crate::config::{ClusterConfig, NodeId};

/// Every configured host's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNames(BTreeMap<NodeId, String>);

impl HostNames {
    /// The hosts of `config`.
    pub fn of(config: &ClusterConfig) -> Self {
        HostNames(
            config
                .hosts
                .iter()
                .map(|h| (h.node_id, h.name.clone()))
                .collect(),
        )
    }

    /// The name of host `id`, or `node<id>` when none is configured.
    pub fn name(&self, id: NodeId) -> String {
        self.0
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node{id}"))
    }
}
