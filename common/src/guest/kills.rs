//! Kills through the hosts: a partner silent long enough to have left the cluster, or
//! one whose stop failed (HaltFlag), is killed by the hosts on this guest's request.
//! The hosts' kill gate decides; its answer comes back as a kill result: done (the
//! node is held dead at once), not now (asked again later), or refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::{Effect, GuestCore};
use crate::admin::GuestNodeState;
use crate::config::NodeId;
use crate::hostlink::LinkMessage;

/// Wait of the higher node id before asking for a silent partner to be killed: across
/// a partition of the guests alone, the lower node id asks first, so only one side is
/// killed.
pub const KILL_STAGGER: Duration = Duration::from_millis(500);
/// Pause before asking again for a kill that could not be asked.
pub(super) const KILL_RETRY: Duration = Duration::from_millis(500);

/// A kill to ask for once due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    node: NodeId,
    at: Duration,
    /// HaltFlag asks (the node may still be heard) rather than its silence.
    halt: bool,
}

/// The kill requests of this guest.
#[derive(Debug, Default)]
pub(super) struct Kills {
    due: Vec<Due>,
    /// Requests sent: request id → node and the incarnation it had.
    sent: BTreeMap<u64, (NodeId, u64)>,
    next: u64,
    /// Nodes whose kill request was reported (once per silence, not at every retry).
    reported: BTreeSet<NodeId>,
}

impl Kills {
    /// Node `node` left the cluster at `now`: ask for it to be killed, after a stagger
    /// when it has the lower id.
    pub(super) fn left_cluster(&mut self, now: Duration, me: NodeId, node: NodeId) {
        let delay = if node < me {
            KILL_STAGGER
        } else {
            Duration::ZERO
        };
        self.schedule(node, now + delay, false);
    }

    fn schedule(&mut self, node: NodeId, at: Duration, halt: bool) {
        self.due.push(Due { node, at, halt });
    }

    /// Node `node` is heard of again (not LEFTCLUSTER): a new silence is reported anew.
    pub(super) fn heard_of(&mut self, node: NodeId) {
        self.reported.remove(&node);
    }

    /// The link went down: the answers to the requests in flight are lost with it.
    pub(super) fn link_lost(&mut self, now: Duration) {
        for (_, (node, _)) in std::mem::take(&mut self.sent) {
            self.schedule(node, now + KILL_RETRY, false);
        }
    }

    /// Takes the asks due at `now`.
    fn take_due(&mut self, now: Duration) -> Vec<Due> {
        let (due, later) = self.due.drain(..).partition(|d| d.at <= now);
        self.due = later;
        due
    }
}

impl GuestCore {
    /// HaltFlag: the engine asks for node `n` (its stop failed) to be killed.
    pub(super) fn halt_kill(&mut self, now: Duration, n: NodeId) {
        if self.link.host.is_some() {
            // Killed through the hosts like a silent partner.
            self.kills.schedule(n, now, true);
            return;
        }
        let name = self.name(n);
        self.record(
            Some(name.clone()),
            "kill_requested",
            format!(
                "{name} must be killed (HaltFlag: its stop failed); there is no host \
                 link to do it: make sure {name} is off, then run hvctl node down {name}"
            ),
            json!({ "node": name }),
        );
    }

    /// Asks the host to kill the nodes whose request is due.
    pub(super) fn request_kills(&mut self, now: Duration) {
        for Due { node, halt, .. } in self.kills.take_due(now) {
            let state = self.nodes.state_of(node);
            if state == Some(GuestNodeState::Down)
                || (!halt && state != Some(GuestNodeState::LeftCluster))
            {
                continue;
            }
            if !halt && self.heard_rejoining(now, node) {
                // Heard again after it left (a new incarnation, say, after it was held
                // DOWN): it is not silent but rejoining. Asked again should it fall
                // silent once more.
                self.kills.schedule(node, now + KILL_RETRY, false);
                continue;
            }
            let (true, Some(host)) = (self.has_link, self.link.host.clone()) else {
                // Not linked right now: ask again once the link is back.
                self.kills.schedule(node, now + KILL_RETRY, halt);
                continue;
            };
            let incarnation = self.heard_incarnation(node);
            self.kills.next += 1;
            let request = self.kills.next;
            self.out.push(Effect::SendLink(LinkMessage::KillRequest {
                request,
                cluster: self.cluster.clone(),
                node_id: node,
            }));
            self.kills.sent.insert(request, (node, incarnation));
            if !self.kills.reported.insert(node) {
                continue;
            }
            let name = self.name(node);
            self.record(
                Some(name.clone()),
                "kill_requested",
                if halt {
                    format!("{name} must be killed (HaltFlag: its stop failed): asked {host} to have it killed")
                } else {
                    format!("{name} is silent: asked {host} to have it killed")
                },
                json!({ "node": name, "request": request }),
            );
        }
    }

    /// Whether node `node` is heard now although it left the cluster (it must rejoin).
    fn heard_rejoining(&self, now: Duration, node: NodeId) -> bool {
        let dead_after = self.membership.config().dead_after;
        self.membership.peers(now).iter().any(|p| {
            p.node == node
                && p.must_rejoin
                && p.silent_for_ms
                    .is_some_and(|ms| Duration::from_millis(ms) < dead_after)
        })
    }

    /// The hosts' answer to kill request `request`.
    pub(super) fn on_kill_result(
        &mut self,
        now: Duration,
        request: u64,
        ok: bool,
        detail: String,
        retry_after_ms: u64,
    ) {
        let Some((id, incarnation)) = self.kills.sent.remove(&request) else {
            return;
        };
        let name = self.name(id);
        if ok {
            self.record(
                Some(name.clone()),
                "node_killed",
                format!("{name} was killed through the hosts ({detail})"),
                json!({ "node": name, "detail": detail }),
            );
            let mut changes = self.hold_dead(now, id, incarnation);
            changes.extend(self.nodes.update(&self.membership.peers(now)));
            self.after_node_changes(now, changes);
        } else if retry_after_ms > 0 {
            // Not now (its host is slow): ask again while it stays silent.
            let at = now + Duration::from_millis(retry_after_ms);
            self.kills.schedule(id, at, false);
        } else {
            self.record(
                Some(name.clone()),
                "kill_failed",
                format!("{name} could not be killed through the hosts: {detail}"),
                json!({ "node": name, "detail": detail }),
            );
        }
    }
}
