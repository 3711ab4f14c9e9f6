//! What becomes of a kill request of a linked guest, of an order of another host, and
//! of a destroy's result: refused, deferred, joined to an order in flight, or a new
//! order for the host that runs the target; the asking guests are answered when the
//! order settles (or is given up).

use std::time::Duration;

use serde_json::json;

use super::{Given, Kills};
use crate::config::{GuestClusterEntry, NodeId};
use crate::host::effect::{DestroyTarget, Effect, LimitedText};
use crate::host::names::HostNames;
use crate::host::notices::{Linked, Links};
use crate::hostlink::{KillAnswer, KillOrder, LinkMessage};
use crate::kill_gate::Admission;
use crate::membership::{HostState, Membership, WatchdogVerdict};

/// How long a guest waits before asking again to kill a guest of a slow host, ms.
pub const KILL_DEFER_MS: u64 = 1000;

/// What a kill decision reads: the links, the membership, the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// Now, on the core's clock.
    pub now: Duration,
    /// This host.
    pub me: NodeId,
    /// Linked guests, here and on the other hosts.
    pub links: &'a Links,
    /// Host membership.
    pub membership: &'a Membership,
    /// The configured guest clusters.
    pub guest_clusters: &'a [GuestClusterEntry],
    /// Host names.
    pub names: &'a HostNames,
}

/// Facts about a domain found not running where it was to be destroyed, that the
/// driver measures (domains and migrations are listed there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotRunningFacts {
    /// A host not proved down reports the domain running.
    pub reported_elsewhere: bool,
    /// The domain is being moved.
    pub moving: bool,
}

/// The answer to request `request` of the guest on `conn`.
pub fn kill_result(conn: u64, request: u64, ok: bool, detail: String, retry: u64) -> Effect {
    Effect::SendToGuest {
        conn,
        message: LinkMessage::KillResult {
            request,
            ok,
            detail,
            retry_after_ms: retry,
        },
    }
}

impl Kills {
    /// The guest on `conn` asks for node `node_id` of `cluster` to be killed.
    pub fn on_request(
        &mut self,
        cx: Cx<'_>,
        (conn, request): (u64, u64),
        cluster: String,
        node_id: NodeId,
        out: &mut Vec<Effect>,
    ) {
        let Some(asker) = cx.links.guest(conn).cloned() else {
            return;
        };
        // A guest may send refused requests as fast as it likes: they are counted, and
        // recorded at most once every 10 s.
        let refuse = |out: &mut Vec<Effect>, why: String| {
            out.push(Effect::RecordLimited {
                counter: "kill_requests_refused",
                subject: Some(asker.node.clone()),
                kind: "kill_refused",
                message: LimitedText::Latest {
                    text: format!(
                        "{} of {}: kill request refused: {why}",
                        asker.node, asker.cluster
                    ),
                    what: "refused",
                },
                detail: json!({ "cluster": cluster, "node_id": node_id, "why": why }),
            });
            out.push(kill_result(conn, request, false, why, 0));
        };
        // Only a member of the asker's own guest cluster, as the hosts know it.
        if let Err(why) = allowed(cx.guest_clusters, &asker, &cluster, node_id) {
            return refuse(out, why);
        }
        if !self.admit(cx, (conn, request), &asker, &cluster, node_id, out) {
            return;
        }
        let Some(target_host) = cx.links.locate(&cluster, node_id) else {
            let why =
                format!("no host reports node {node_id} of {cluster} linked: it cannot be found");
            return refuse(out, why);
        };
        // A host that reports itself slow (its load watchdog) may only be making its
        // guests late: they are not killed for it while the host cluster judges it.
        let peer = (target_host != cx.me).then(|| {
            cx.membership
                .peers(cx.now)
                .into_iter()
                .find(|p| p.node == target_host)
        });
        let verdict = match &peer {
            None => cx.membership.watchdog(),
            Some(p) => p.as_ref().map(|p| p.watchdog).unwrap_or_default(),
        };
        let host = cx.names.name(target_host);
        if !matches!(verdict, WatchdogVerdict::Ok) {
            let why = format!(
                "its host {host} reports itself {}: the guest may only be late; ask again later",
                crate::host::describe::verdict_text(verdict)
            );
            out.push(Effect::RecordLimited {
                counter: "kill_requests_deferred",
                subject: Some(asker.node.clone()),
                kind: "kill_deferred",
                message: LimitedText::Count {
                    before: format!(
                        "{} of {}: kill of node {node_id} deferred (",
                        asker.node, asker.cluster
                    ),
                    after: format!(" request(s) since the last report): {why}"),
                },
                detail: json!({ "cluster": cluster, "node_id": node_id, "host": host }),
            });
            out.push(kill_result(conn, request, false, why, KILL_DEFER_MS));
            return;
        }
        if let Some(p) = &peer {
            if matches!(p.as_ref().map(|p| p.state), Some(HostState::Left)) {
                return refuse(
                    out,
                    format!(
                        "its host {host} left the host cluster (its agent was stopped cleanly): no agent there can kill the guest; start hv-hostd on {host} again, or destroy the guest there by hand and declare it down"
                    ),
                );
            }
            if !matches!(p.as_ref().map(|p| p.state), Some(HostState::Up)) {
                return refuse(
                    out,
                    format!(
                        "its host {host} is not Up: the host cluster fences {host} and the guests are told when it is DOWN"
                    ),
                );
            }
        }
        out.push(Effect::Count("kill_requests"));
        let target = (cluster.clone(), node_id);
        let order = self.give(cx.now, conn, request, target_host, cluster, node_id);
        let incarnation = cx.links.incarnation_of(&target.0, node_id);
        self.gate.ordered(&target, order.id, incarnation);
        out.push(Effect::Record {
            subject: Some(asker.node.clone()),
            kind: "kill_requested",
            message: format!(
                "{} asks for node {node_id} of {} to be killed; it runs on {host}",
                asker.node, asker.cluster
            ),
            detail: json!({ "cluster": asker.cluster, "node_id": node_id, "host": host, "order": order.id }),
        });
        if target_host == cx.me {
            self.destroy(cx, cx.me, order, out);
        } else {
            out.push(Effect::SendHeartbeats);
        }
    }

    /// Whether the request may become a new order (one per target in flight, none for
    /// a guest already proved dead, a rate per asking guest); when not, it is answered
    /// here.
    fn admit(
        &mut self,
        cx: Cx<'_>,
        (conn, request): (u64, u64),
        asker: &Linked,
        cluster: &str,
        node_id: NodeId,
        out: &mut Vec<Effect>,
    ) -> bool {
        let target = (cluster.to_string(), node_id);
        let incarnation = cx.links.incarnation_of(cluster, node_id);
        let who = (asker.cluster.clone(), asker.node_id);
        match self.gate.admit(cx.now, &who, &target, incarnation) {
            Admission::Order => true,
            Admission::Join { order } => {
                out.push(Effect::Count("kill_requests_joined"));
                if !self.gate.wait(&target, conn, request) {
                    let why = format!("node {node_id} of {cluster} is being killed already (order {order}): ask again later");
                    out.push(kill_result(conn, request, false, why, KILL_DEFER_MS));
                }
                false
            }
            Admission::AlreadyDead {
                detail,
                retry_after_ms,
            } => {
                // No proof for this asker (the guest may have been started again
                // since): it asks again after the window, when a new order is given.
                out.push(Effect::Count("kill_requests_joined"));
                let detail = format!(
                    "killed already, not again for {} s: {detail}",
                    retry_after_ms.div_ceil(1000)
                );
                out.push(kill_result(conn, request, false, detail, retry_after_ms));
                false
            }
            Admission::Limited { retry_after_ms } => {
                out.push(Effect::RecordLimited {
                    counter: "kill_requests_limited",
                    subject: Some(asker.node.clone()),
                    kind: "kill_limited",
                    message: LimitedText::Count {
                        before: format!("{} of {}: ", asker.node, asker.cluster),
                        after: " kill request(s) over its rate since the last report, each \
                                told to ask again later"
                            .into(),
                    },
                    detail: json!({ "cluster": cluster, "node_id": node_id, "retry_after_ms": retry_after_ms }),
                });
                let why = "too many kill requests: ask again later".to_string();
                out.push(kill_result(conn, request, false, why, retry_after_ms));
                false
            }
        }
    }

    /// Destroys a guest of this host for an order of host `from`, when it linked here;
    /// an order for a guest that never did fails at once.
    pub fn destroy(&mut self, cx: Cx<'_>, from: NodeId, order: KillOrder, out: &mut Vec<Effect>) {
        let Some(guest) = cx.links.known_here(&order.cluster, order.node_id) else {
            let detail = format!(
                "node {} of {} never linked to {}",
                order.node_id,
                order.cluster,
                cx.names.name(cx.me)
            );
            let facts = NotRunningFacts::default();
            return self.on_destroyed(cx, (from, order.id), (false, detail), None, facts, out);
        };
        out.push(Effect::Destroy {
            from,
            order: order.id,
            guest: DestroyTarget {
                cluster: guest.cluster.clone(),
                node: guest.node.clone(),
                domain: guest.domain.clone().unwrap_or_else(|| guest.node.clone()),
            },
        });
    }

    /// A destroy for order `id` of host `from` ended. A domain that was not running here
    /// is dead all the same when no host not proved down reports it, it is not being
    /// moved and no guest is linked from it: it runs nowhere.
    pub fn on_destroyed(
        &mut self,
        cx: Cx<'_>,
        (from, id): (NodeId, u64),
        (ok, detail): (bool, String),
        not_running: Option<String>,
        facts: NotRunningFacts,
        out: &mut Vec<Effect>,
    ) {
        let nowhere = not_running.filter(|d| {
            let linked_now = cx
                .links
                .local()
                .any(|(_, g)| g.domain.as_deref() == Some(d.as_str()));
            crate::link_identity::not_running_proves_dead(
                facts.reported_elsewhere,
                facts.moving,
                linked_now,
            )
        });
        let (ok, detail) = match nowhere {
            Some(d) => (
                true,
                format!("domain {d} is off here and no host reports it running: it is dead"),
            ),
            None => (ok, detail),
        };
        out.push(Effect::Record {
            subject: Some(cx.names.name(cx.me)),
            kind: if ok {
                "guest_destroyed"
            } else {
                "guest_destroy_failed"
            },
            message: detail.clone(),
            detail: json!({ "order": id, "by": cx.names.name(from), "ok": ok }),
        });
        if from == cx.me {
            if let Some(given) = self.settle(id) {
                self.answer(cx.now, &given, ok, detail, out);
            }
        } else {
            self.executed(cx.now, from, id, ok, detail);
            out.push(Effect::SendHeartbeats);
        }
    }

    /// Host `from`'s heartbeat carried `orders` and `answers`: orders for this host not
    /// seen before are executed, answers settle this host's orders.
    pub fn heard(
        &mut self,
        cx: Cx<'_>,
        from: NodeId,
        (orders, answers): (&[KillOrder], &[KillAnswer]),
        out: &mut Vec<Effect>,
    ) {
        for order in self.new_orders(cx.me, from, orders) {
            self.destroy(cx, from, order, out);
        }
        for (given, answer) in self.settled(cx.me, answers) {
            self.answer(cx.now, &given, answer.ok, answer.detail, out);
        }
    }

    /// Orders unanswered for longer than `limit` are reported failed to the guests that
    /// asked.
    pub fn expire(&mut self, cx: Cx<'_>, limit: Duration, out: &mut Vec<Effect>) {
        for given in self.expired(cx.now, limit) {
            let host = cx.names.name(given.order.target_host);
            self.answer(cx.now, &given, false, format!("no answer from {host}"), out);
        }
    }

    /// Tells every guest that asked (or joined) what became of an order.
    fn answer(
        &mut self,
        now: Duration,
        given: &Given,
        ok: bool,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        for (conn, request) in self.gate.settled(now, given.order.id, ok, &detail) {
            if (conn, request) != (given.conn, given.request) {
                out.push(kill_result(conn, request, ok, detail.clone(), 0));
            }
        }
        out.push(kill_result(given.conn, given.request, ok, detail, 0));
    }
}

/// Whether `asker` may have node `node_id` of `cluster` killed, or why not.
fn allowed(
    guest_clusters: &[GuestClusterEntry],
    asker: &Linked,
    cluster: &str,
    node_id: NodeId,
) -> Result<(), String> {
    let identity = crate::link_identity::Identity {
        cluster: asker.cluster.clone(),
        node: asker.node.clone(),
        node_id: asker.node_id,
        domain: asker.domain.clone().unwrap_or_default(),
    };
    let Some(g) = guest_clusters.iter().find(|g| g.name == asker.cluster) else {
        return Err(format!(
            "guest cluster {} is not served here",
            asker.cluster
        ));
    };
    crate::link_identity::kill_target(g, &identity, cluster, node_id)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
