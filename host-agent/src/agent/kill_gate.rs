//! Kill requests of linked guests through the gate: one order per target in flight,
//! none for a guest already proved dead, and a rate per asking guest
//! ([`hvcluster_common::kill_gate`]). The rest waits on the order, or is told to ask
//! again later.

use hvcluster_common::config::NodeId;
use hvcluster_common::kill_gate::Admission;
use serde_json::json;

use super::{Agent, Linked};

impl Agent {
    /// Whether the request `request` of the guest on `conn` (`asker`) to kill node
    /// `node_id` of `cluster` may become a new order; when not, it is answered here.
    pub(super) fn admit_kill(
        &mut self,
        conn: u64,
        request: u64,
        asker: &Linked,
        cluster: &str,
        node_id: NodeId,
    ) -> bool {
        let target = (cluster.to_string(), node_id);
        let incarnation = self.links.incarnation_of(cluster, node_id);
        let now = self.now();
        let who = (asker.cluster.clone(), asker.node_id);
        match self.kills.gate.admit(now, &who, &target, incarnation) {
            Admission::Order => true,
            Admission::Join { order } => {
                self.member.counters.bump("kill_requests_joined");
                if !self.kills.gate.wait(&target, conn, request) {
                    let why = format!("node {node_id} of {cluster} is being killed already (order {order}): ask again later");
                    self.send_kill_result(conn, request, false, why, super::KILL_DEFER_MS);
                }
                false
            }
            Admission::AlreadyDead {
                detail,
                retry_after_ms,
            } => {
                // No proof for this asker (the guest may have been started again
                // since): it asks again after the window, when a new order is given.
                self.member.counters.bump("kill_requests_joined");
                let detail = format!(
                    "killed already, not again for {} s: {detail}",
                    retry_after_ms.div_ceil(1000)
                );
                self.send_kill_result(conn, request, false, detail, retry_after_ms);
                false
            }
            Admission::Limited { retry_after_ms } => {
                let node = asker.node.clone();
                let asker_cluster = asker.cluster.clone();
                self.member.record_limited(
                    "kill_requests_limited",
                    Some(&node),
                    "kill_limited",
                    |since| {
                        format!(
                            "{node} of {asker_cluster}: {since} kill request(s) over its rate \
                             since the last report, each told to ask again later"
                        )
                    },
                    json!({ "cluster": cluster, "node_id": node_id, "retry_after_ms": retry_after_ms }),
                );
                let why = "too many kill requests: ask again later".to_string();
                self.send_kill_result(conn, request, false, why, retry_after_ms);
                false
            }
        }
    }
}
