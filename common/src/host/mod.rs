//! The host core: every decision of the host agent's failover path in one pure state
//! machine. [`HostCore::step`] takes what arrives ([`Event`]), [`HostCore::tick`] takes
//! time, and both return what must happen ([`Effect`]), in order. Time comes in as an
//! argument; nothing here touches a socket, a clock, a file or a thread.
//!
//! Capabilities, one module each, composed here and nowhere else:
//! - membership and quorum ([`crate::membership`]),
//! - fencing ([`fencing`]; the machine in [`crate::fencing`]): only proof makes a host
//!   DOWN, and only once its record is journaled,
//! - panic notices ([`panic`]),
//! - host-down notices to linked guests ([`notices`]): sent by the very step that
//!   produces the DOWN,
//! - guest kills ([`kills`]): requests through the kill gate, orders and answers between
//!   hosts, destroy results.
//!
//! Not composed here yet, and driven by the host agent directly: the operator's
//! maintenance change ([`maintenance`], answered only once its state is on disk) and the
//! migration lock ([`migration`], journaled before the hypervisor is asked), and the
//! host-side applications' resource results ([`apps`], reported after a fresh listing),
//! and double runs ([`domains`]).
//!
//! Every capability that needs "the coordinator" asks [`coordinator`].

pub mod apps;
pub mod coordinator;
pub mod describe;
pub mod domains;
pub mod effect;
pub mod event;
pub mod fencing;
mod heartbeat;
pub mod kills;
pub mod maintenance;
pub mod migration;
pub mod names;
pub mod notices;
pub mod panic;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::config::{ClusterConfig, GuestClusterEntry, NodeId};
use crate::fencing::{FenceEvent, Fencing, FencingConfig, View};
use crate::membership::{Action, Membership, MembershipConfig, MembershipEvent};

pub use effect::{DestroyTarget, Effect, Effects, JournalHealth, LimitedText};
pub use event::Event;
pub use fencing::FenceCore;
pub use kills::request::NotRunningFacts;
pub use kills::Kills;
pub use names::HostNames;
pub use notices::{Linked, Links};

/// What the host core is configured with, beyond membership and fencing.
#[derive(Debug, Clone)]
pub struct HostCoreConfig {
    /// This host.
    pub me: NodeId,
    /// Host names, for wording.
    pub names: HostNames,
    /// The guest clusters served (who may kill whom).
    pub guest_clusters: Vec<GuestClusterEntry>,
    /// Addresses a panic notice may come from, and the host each is.
    pub kdump_sources: BTreeMap<IpAddr, NodeId>,
    /// Unacknowledged host-down notices are repeated this often.
    pub notice_retry: Duration,
    /// A kill order unanswered this long is given up.
    pub kill_answer_limit: Duration,
}

impl HostCoreConfig {
    /// The host core's part of `config`, for host `me`.
    pub fn from_cluster(config: &ClusterConfig, me: NodeId) -> Self {
        let kdump_sources = config
            .hosts
            .iter()
            .flat_map(|h| {
                h.addresses
                    .values()
                    .chain(&h.kdump_addresses)
                    .map(move |a| (*a, h.node_id))
            })
            .collect();
        let hv = &config.hypervisor;
        // The target host may wait for a crash dump before its destroy (kill_nmi_ms).
        let kill_answer_limit = Duration::from_millis(hv.destroy_timeout_ms)
            + Duration::from_millis(hv.kill_nmi_ms.unwrap_or(0))
            + Duration::from_secs(10);
        HostCoreConfig {
            me,
            names: HostNames::of(config),
            guest_clusters: config.guest_clusters.clone(),
            kdump_sources,
            notice_retry: Duration::from_millis(config.host_link.notice_retry_ms),
            kill_answer_limit,
        }
    }
}

/// The host agent's decisions: membership, fencing, panic notices, host-down notices and
/// guest kills.
#[derive(Debug)]
pub struct HostCore {
    cfg: HostCoreConfig,
    membership: Membership,
    fence: FenceCore,
    links: Links,
    kills: Kills,
}

impl HostCore {
    /// A core for host `me` of `config` with incarnation `incarnation`, started at
    /// `now`; `digest` is the configuration's; kill orders are numbered after
    /// `first_kill_order`.
    pub fn new(
        config: &ClusterConfig,
        me: NodeId,
        (digest, incarnation): ([u8; 16], u64),
        now: Duration,
        first_kill_order: u64,
    ) -> Self {
        let mut membership = Membership::new(
            MembershipConfig::from_cluster(config, me, digest),
            incarnation,
            now,
        );
        membership.set_panic_probe(Duration::from_millis(config.kdump.probe_ms));
        let fencing = Fencing::new(FencingConfig::from_cluster(config, me));
        Self::compose(
            HostCoreConfig::from_cluster(config, me),
            membership,
            fencing,
            first_kill_order,
        )
    }

    /// A core of these parts.
    pub fn compose(
        cfg: HostCoreConfig,
        membership: Membership,
        fencing: Fencing,
        first_kill_order: u64,
    ) -> Self {
        HostCore {
            links: Links::new(cfg.me, cfg.notice_retry),
            kills: Kills::new(first_kill_order),
            fence: FenceCore::new(fencing),
            membership,
            cfg,
        }
    }

    /// This host.
    pub fn me(&self) -> NodeId {
        self.cfg.me
    }

    /// Host names.
    pub fn names(&self) -> &HostNames {
        &self.cfg.names
    }

    /// The coordinator at `now` ([`coordinator`]): the present host with the lowest
    /// node id, this one included.
    pub fn coordinator(&self, now: Duration) -> NodeId {
        let peers = self.membership.peers(now);
        let present = peers.iter().filter(|p| p.state.present()).map(|p| p.node);
        coordinator::coordinator(self.cfg.me, present)
    }

    /// The membership, to read.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Fencing, to read.
    pub fn fencing(&self) -> &FenceCore {
        &self.fence
    }

    /// Fencing, for the operator's `fence` and `confirm-down` (their effects carry no
    /// DOWN: that comes with [`Event::Journaled`]).
    pub fn fencing_mut(&mut self) -> &mut FenceCore {
        &mut self.fence
    }

    /// The membership and fencing, for the operator's `fence` and `confirm-down`, whose
    /// refusals say what was heard of the host.
    pub fn operator_parts(&mut self) -> (&Membership, &mut FenceCore) {
        (&self.membership, &mut self.fence)
    }

    /// Linked guests, here and on the other hosts.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Handles one input at `now`.
    pub fn step(&mut self, now: Duration, event: Event) -> Effects {
        let mut out = Vec::new();
        match event {
            Event::StateLoaded { downs } => self.fence.restore(downs),
            Event::Heartbeat {
                from,
                incarnation,
                accepted,
                payload,
            } => {
                // The driver reads the sections once and reports what it could not take
                // (`heard`); here, as in tests and the simulation, that is left unreported.
                let (sections, _) = crate::host_heartbeat::HostSections::read(&payload);
                return self.heard(now, (from, incarnation), accepted, (&payload, &sections));
            }
            Event::Kdump { from, bytes } => {
                let sources = &self.cfg.kdump_sources;
                if let Some(node) =
                    panic::noticed_host(sources, self.cfg.me, from, &bytes, &mut out)
                {
                    let actions = self.membership.on_kdump_notice(now, node);
                    self.membership_actions(actions, &mut out);
                }
            }
            Event::Watchdog(verdict) => {
                let before = self.membership.watchdog();
                self.membership.set_watchdog(verdict);
                if std::mem::discriminant(&before) != std::mem::discriminant(&verdict) {
                    out.push(Effect::Record {
                        subject: Some(self.cfg.names.name(self.cfg.me)),
                        kind: "watchdog",
                        message: format!("load watchdog: {}", describe::verdict_text(verdict)),
                        detail: serde_json::to_value(verdict).unwrap_or_default(),
                    });
                }
            }
            Event::FenceLevelDone {
                target,
                level,
                ok,
                detail,
            } => {
                let (fence, o) = (&mut self.fence, &mut out);
                fence.on_level_result(now, (target, level), ok, detail, o);
            }
            Event::Journaled { down, result } => {
                self.fence
                    .on_journaled(now, down.as_ref(), result, &mut out)
            }
            Event::Rejoined { incarnation } => {
                let actions = self.membership.rejoin(now, incarnation);
                self.membership_actions(actions, &mut out);
            }
            Event::GuestLinked { conn, guest } => {
                self.on_linked(conn, guest, &mut out);
                // A guest linking after a host went down is owed its notice now.
                self.notices(now, &mut out);
            }
            Event::LinkClosed { conn, why } => {
                if let Some(g) = self.links.closed(conn, now) {
                    out.push(Effect::Record {
                        subject: Some(g.node.clone()),
                        kind: "guest_unlinked",
                        message: format!(
                            "{} of guest cluster {}: link closed ({why})",
                            g.node, g.cluster
                        ),
                        detail: json!({ "cluster": g.cluster, "why": why }),
                    });
                    out.push(Effect::SendHeartbeats);
                }
            }
            Event::HostDownAck { conn, epoch } => {
                if self.links.on_ack(conn, epoch) {
                    out.push(Effect::Count("host_down_notices_acked"));
                }
            }
            Event::KillRequest {
                conn,
                request,
                cluster,
                node_id,
            } => {
                let cx = kill_cx(&self.cfg, now, &self.links, &self.membership);
                let o = &mut out;
                self.kills
                    .on_request(cx, (conn, request), cluster, node_id, o);
            }
            Event::Destroyed {
                from,
                order,
                ok,
                detail,
                not_running,
                facts,
            } => {
                let cx = kill_cx(&self.cfg, now, &self.links, &self.membership);
                let (id, result) = ((from, order), (ok, detail));
                self.kills
                    .on_destroyed(cx, id, result, not_running, facts, &mut out);
            }
        }
        self.after_downs(now, &mut out);
        out
    }

    /// This host leaves the cluster (its agent stops cleanly): its heartbeats say so from
    /// now on, and the first go at once. The driver sends a few more and stops.
    pub fn leave(&mut self, now: Duration) -> Effects {
        let mut out = vec![Effect::Record {
            subject: Some(self.cfg.names.name(self.cfg.me)),
            kind: "leaving",
            message: "leaving the host cluster: peers hold this host Left, not Failed".to_string(),
            detail: json!({ "incarnation": self.membership.incarnation(), "at_ms": now.as_millis() as u64 }),
        }];
        let actions = self.membership.leave();
        self.membership_actions(actions, &mut out);
        out
    }

    /// Advances time: failure detection, fencing, repeated notices, kill orders given up.
    pub fn tick(&mut self, now: Duration) -> Effects {
        let mut out = Vec::new();
        let actions = self.membership.tick(now);
        self.membership_actions(actions, &mut out);
        let view = View::of(&self.membership, now);
        self.fence.tick(now, &view, &mut out);
        let limit = self.cfg.kill_answer_limit;
        let cx = kill_cx(&self.cfg, now, &self.links, &self.membership);
        self.kills.expire(cx, limit, &mut out);
        if !self.after_downs(now, &mut out) {
            // Repeats of unacknowledged notices.
            self.notices(now, &mut out);
        }
        out
    }

    fn on_linked(&mut self, conn: u64, guest: Linked, out: &mut Vec<Effect>) {
        out.push(Effect::Count("guests_linked"));
        out.push(Effect::Record {
            subject: Some(guest.node.clone()),
            kind: "guest_linked",
            message: format!(
                "{} of guest cluster {} linked{}",
                guest.node,
                guest.cluster,
                guest
                    .domain
                    .as_ref()
                    .map(|d| format!(" (domain {d})"))
                    .unwrap_or_default()
            ),
            detail: json!({ "cluster": guest.cluster, "node_id": guest.node_id, "incarnation": guest.incarnation, "domain": guest.domain }),
        });
        self.links.register(conn, guest);
        // Others learn at once who runs here.
        out.push(Effect::SendHeartbeats);
    }

    fn membership_actions(&mut self, actions: Vec<Action>, out: &mut Vec<Effect>) {
        for action in actions {
            out.push(match action {
                Action::SendHeartbeats => Effect::SendHeartbeats,
                // Forged notices can repeat these at will.
                Action::Event(
                    e @ (MembershipEvent::PanicNotice { .. }
                    | MembershipEvent::PanicNoticeRefuted { .. }),
                ) => Effect::MembershipLimited(e),
                Action::Event(e) => Effect::Membership(e),
                Action::Rejoin => Effect::Rejoin,
            });
        }
    }

    /// A DOWN reported in this step's effects is shared at once (heartbeats), told to
    /// the linked guests with a partner on it (notices, in this same step), and handed
    /// to what the driver still decides itself. Whether there was one.
    fn after_downs(&mut self, now: Duration, out: &mut Vec<Effect>) -> bool {
        let downs: Vec<NodeId> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Fence(FenceEvent::Down(d)) => Some(d.target),
                _ => None,
            })
            .collect();
        if downs.is_empty() {
            return false;
        }
        out.push(Effect::SendHeartbeats);
        self.notices(now, out);
        out.extend(downs.into_iter().map(Effect::HostDown));
        true
    }

    /// The host-down notices due now: new ones, and repeats of unacknowledged ones.
    fn notices(&mut self, now: Duration, out: &mut Vec<Effect>) {
        let downs = self.fence.down_records();
        if downs.is_empty() {
            return;
        }
        let names = &self.cfg.names;
        let due = self.links.due(
            now,
            &downs,
            |n| names.name(n),
            |r| describe::proof_text(r, |n| names.name(n)),
        );
        for notice in due {
            notices::announce(&self.links, notice, out);
        }
    }
}

/// What a kill decision reads.
fn kill_cx<'a>(
    cfg: &'a HostCoreConfig,
    now: Duration,
    links: &'a Links,
    membership: &'a Membership,
) -> kills::request::Cx<'a> {
    kills::request::Cx {
        now,
        me: cfg.me,
        links,
        membership,
        guest_clusters: &cfg.guest_clusters,
        names: &cfg.names,
    }
}
