//! The membership of the guest cluster as the guest agent lives it: heartbeats of the
//! partners, node states, down proofs, being declared dead, and rejoining.

use std::time::Duration;

use serde_json::json;

use super::{describe, Effect, GuestCore};
use crate::admin::GuestNodeState;
use crate::application::{DownProof, GuestHeartbeat, NodeChange};
use crate::config::NodeId;
use crate::membership::Action;
use crate::wire::Accepted;

impl GuestCore {
    pub(super) fn on_heartbeat(
        &mut self,
        now: Duration,
        sender: NodeId,
        incarnation: u64,
        accepted: Accepted,
        hb: GuestHeartbeat,
    ) {
        let membership = &hb.membership;
        let fresh = self.membership.is_fresh(membership);
        let actions = self
            .membership
            .on_heartbeat(now, sender, incarnation, accepted, membership);
        self.apply_membership(now, actions);
        if !fresh {
            // Possibly recorded before this agent started: nothing in it is news.
            self.out
                .push(super::Effect::Count("heartbeats_unconfirmed"));
            return;
        }
        self.update_nodes(now);
        self.migration_heard(now, sender, hb.migrating_ms);
        let actions = self.engine.on_gossip(now, sender, incarnation, &hb.gossip);
        self.apply_apps(now, actions);
        for proof in hb.proofs {
            self.on_proof(now, sender, proof);
        }
    }

    fn on_proof(&mut self, now: Duration, from: NodeId, proof: DownProof) {
        if proof.node == self.membership.me() {
            if proof.incarnation == self.membership.incarnation() && !self.declared_dead {
                // The others hold this node dead and may take over its applications:
                // nothing may run here any more.
                self.declared_dead = true;
                let by = self.name(from);
                let node = self.own_name();
                self.record(
                    Some(node.clone()),
                    "declared_down",
                    format!("{node}: {by} holds this node DOWN: stopping every application here; restart hv-guestd to rejoin"),
                    json!({ "by": by }),
                );
                let actions = self.engine.abandon(now);
                self.apply_apps(now, actions);
            }
            return;
        }
        if let Some(change) = self.nodes.prove_down(proof) {
            self.after_node_changes(now, vec![change]);
        }
    }

    /// Node states from what the membership hears now.
    pub(super) fn update_nodes(&mut self, now: Duration) {
        let changes = self.nodes.update(&self.membership.peers(now));
        self.after_node_changes(now, changes);
    }

    /// Records node changes, tells the engine, and schedules kill asks for the nodes
    /// that left the cluster.
    pub(super) fn after_node_changes(&mut self, now: Duration, changes: Vec<NodeChange>) {
        for c in &changes {
            let name = self.name(c.node);
            self.record(
                Some(name.clone()),
                "node_state",
                format!("{name}: {} -> {}", c.from, c.to),
                json!({ "from": c.from, "to": c.to }),
            );
        }
        if !changes.is_empty() {
            let actions = self.engine.set_nodes(now, self.nodes.views());
            self.apply_apps(now, actions);
        }
        for c in &changes {
            if c.to != GuestNodeState::LeftCluster {
                self.kills.heard_of(c.node);
            } else if self.has_link {
                self.kills.left_cluster(now, self.membership.me(), c.node);
            }
        }
    }

    /// Node `id`, incarnation `incarnation`, is proved dead by its host (a host-down
    /// notice or a kill): held dead at once rather than after its silence. A node never
    /// heard since this agent started, or heard with a newer incarnation, is not covered.
    pub(super) fn hold_dead(
        &mut self,
        now: Duration,
        id: NodeId,
        incarnation: u64,
    ) -> Vec<NodeChange> {
        let incarnation = incarnation.max(1);
        let heard = self.heard_incarnation(id);
        if heard != 0 && heard <= incarnation {
            // Should it still be heard, it must rejoin with a new incarnation.
            let actions = self.membership.on_panic_notice(now, id);
            self.apply_membership(now, actions);
        }
        self.nodes
            .prove_down(DownProof {
                node: id,
                incarnation,
            })
            .into_iter()
            .collect()
    }

    /// The incarnation node `id` was last heard with (0: never).
    pub(super) fn heard_incarnation(&self, id: NodeId) -> u64 {
        self.nodes
            .views()
            .iter()
            .find(|v| v.id == id)
            .map_or(0, |v| v.incarnation)
    }

    /// Performs what the membership machine returned.
    pub(super) fn apply_membership(&mut self, now: Duration, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendHeartbeats => self.send_heartbeats(),
                Action::Event(e) => {
                    let names = &self.names;
                    let name = |n: NodeId| {
                        names
                            .get(&n)
                            .cloned()
                            .unwrap_or_else(|| format!("node {n}"))
                    };
                    if let Some((subject, kind, message)) = describe::membership_event(&e, name) {
                        let detail = serde_json::to_value(&e).unwrap_or_default();
                        self.record(subject, kind, message, detail);
                    }
                }
                Action::Rejoin => match self.spare_incarnation.take() {
                    Some(incarnation) => self.rejoin(now, incarnation),
                    None if !self.rejoin_waiting => {
                        self.rejoin_waiting = true;
                        self.out.push(Effect::NewIncarnation);
                    }
                    None => {}
                },
            }
        }
    }

    /// A fresh incarnation arrived: kept for the next rejoin, or used by the one that
    /// waits for it.
    pub(super) fn incarnation_reserved(&mut self, now: Duration, incarnation: u64) {
        if std::mem::take(&mut self.rejoin_waiting) {
            self.rejoin(now, incarnation);
        } else {
            self.spare_incarnation = Some(incarnation);
        }
    }

    /// Rejoins the guest cluster under `incarnation`, and asks for the next one.
    fn rejoin(&mut self, now: Duration, incarnation: u64) {
        self.out.push(Effect::Rejoined { incarnation });
        self.out.push(Effect::NewIncarnation);
        let node = self.own_name();
        self.record(
            Some(node.clone()),
            "rejoin",
            format!("{node}: rejoining the guest cluster with incarnation {incarnation}"),
            json!({ "incarnation": incarnation }),
        );
        let actions = self.membership.rejoin(now, incarnation);
        self.apply_membership(now, actions);
    }

    /// `hvctl node down NODE`: the operator's word that `node` is off.
    pub(super) fn node_down(&mut self, now: Duration, node: &str) -> Result<String, String> {
        let Some(id) = self.id_of(node) else {
            return Err(format!("there is no node {node:?} in {}", self.cluster));
        };
        if id == self.membership.me() {
            return Err("this is the node you are on: it is not down".into());
        }
        let peer = self
            .membership
            .peers(now)
            .into_iter()
            .find(|p| p.node == id);
        if let Some(why) = self.nodes.refuse_down(id, peer.as_ref()) {
            return Err(format!("{node} cannot be marked down: {why}"));
        }
        let incarnation = peer.and_then(|p| p.incarnation).unwrap_or(0);
        let change = self.nodes.prove_down(DownProof {
            node: id,
            incarnation,
        });
        if let Some(change) = change {
            self.after_node_changes(now, vec![change]);
        }
        self.announce = true;
        Ok(format!(
            "{node} is DOWN (operator's word): its applications may now switch"
        ))
    }

    /// The id of the node named `name`.
    pub(super) fn id_of(&self, name: &str) -> Option<NodeId> {
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id)
    }
}
