//! Performs the host core's effects: sockets, the journal writer, child processes, the
//! event log and the counters. Nothing is decided here.

use std::time::Instant;

use hvcluster_common::host::{Effect, Effects, Event};
use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::membership::MembershipEvent;
use serde_json::json;

use super::Agent;

impl Agent {
    /// Performs `effects` in order. Heartbeats are sent once however many effects ask:
    /// they are assembled from the state the whole step left.
    pub(super) fn perform(&mut self, effects: Effects) {
        let mut heartbeats_sent = false;
        for effect in effects {
            match effect {
                Effect::SendHeartbeats if heartbeats_sent => {}
                Effect::SendHeartbeats => {
                    heartbeats_sent = true;
                    self.send_heartbeats();
                }
                Effect::Rejoin => self.rejoin(),
                Effect::Membership(e) => {
                    // Who counts as live for the double-run check changes with it.
                    let host_changed = matches!(e, MembershipEvent::HostState { .. });
                    self.report(e);
                    if host_changed && !self.remote_domains.is_empty() {
                        self.check_double_runs();
                    }
                }
                Effect::MembershipLimited(e) => self.report_limited(e),
                Effect::Journal { event, down } => self.fence.journal(event, down),
                Effect::RunFenceLevel {
                    target,
                    level,
                    devices,
                } => self.fence.run_level(target, level, devices),
                Effect::Fence(e) => self.report_fence(&e),
                Effect::JournalHealth(health) => self.journal_health(health),
                Effect::HostDown(target) => self.vm_ha_host_down(target),
                Effect::Destroy { from, order, guest } => self.destroy(from, order, guest),
                Effect::SendToGuest { conn, message } => self.send_to_guest(conn, message),
                Effect::Record {
                    subject,
                    kind,
                    message,
                    detail,
                } => self
                    .member
                    .events
                    .record(subject.as_deref(), kind, message, detail),
                Effect::RecordLimited {
                    counter,
                    subject,
                    kind,
                    message,
                    detail,
                } => self.member.record_limited(
                    counter,
                    subject.as_deref(),
                    kind,
                    |since| message.render(since),
                    detail,
                ),
                Effect::Count(counter) => self.member.counters.bump(counter),
                Effect::LogLimited { counter, message } => {
                    let counters = &self.member.counters;
                    if counters.bump_logged(counter, Instant::now()).is_some() {
                        tracing::warn!("{message}");
                    }
                }
            }
        }
    }

    /// Starts a new incarnation (persisted first) and gives it to the core.
    fn rejoin(&mut self) {
        let incarnation = crate::incarnation::next(&self.config.cluster.state_dir);
        self.member.outbox.restart();
        let own = self.member.own_name.clone();
        self.member.events.record(
            Some(&own),
            "rejoined",
            format!("rejoining the cluster with incarnation {incarnation}"),
            json!({ "incarnation": incarnation }),
        );
        self.step(Event::Rejoined { incarnation });
    }

    /// Sends `message` to the guest on `conn`, if it is still linked.
    fn send_to_guest(&mut self, conn: u64, message: LinkMessage) {
        let Some(tx) = self.link_tx.get(&conn) else {
            return;
        };
        let notice = matches!(message, LinkMessage::HostDown { .. });
        if tx.try_send(message).is_err() && notice {
            tracing::warn!(
                conn,
                "host link busy or closed: the notice is repeated later"
            );
        }
    }
}
