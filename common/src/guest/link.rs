//! The host link as the guest agent lives it: which host it is linked to, and what
//! that host says (host-down notices, kill results, migrations).

use std::time::Duration;

use serde_json::json;

use super::GuestCore;
use crate::admin::GuestNodeState;
use crate::config::NodeId;
use crate::hostlink::LinkMessage;

/// The state of the host link.
#[derive(Debug, Default)]
pub(super) struct HostLink {
    /// The host this guest is linked to, while linked.
    pub host: Option<String>,
}

impl GuestCore {
    pub(super) fn on_linked(&mut self, now: Duration, host: String) {
        let node = self.own_name();
        self.record(
            Some(node.clone()),
            "host_link",
            format!("{node}: linked to the host agent of {host}"),
            json!({ "host": host }),
        );
        self.link.host = Some(host.clone());
        self.migration_linked(now, &host);
    }

    pub(super) fn on_link_lost(&mut self, now: Duration, why: String) {
        // Answers to requests in flight are lost with the link: ask again.
        self.kills.link_lost(now);
        let node = self.own_name();
        self.record(
            Some(node.clone()),
            "host_link_lost",
            format!("{node}: no host link ({why}); retrying"),
            json!({ "why": why }),
        );
        self.link.host = None;
    }

    pub(super) fn on_link_message(&mut self, now: Duration, message: LinkMessage) {
        match message {
            LinkMessage::HostDown {
                epoch,
                host,
                proof,
                guests,
            } => self.on_host_down(now, epoch, host, proof, guests),
            LinkMessage::KillResult {
                request,
                ok,
                detail,
                retry_after_ms,
            } => self.on_kill_result(now, request, ok, detail, retry_after_ms),
            LinkMessage::MigrationPrepare { id, hold_ms } => {
                self.on_migration_prepare(now, id, hold_ms);
            }
            LinkMessage::MigrationEnd { id } => self.on_migration_end(now, id),
            // Anything else is for the link itself (the host's greeting, keepalives).
            _ => self.out.push(super::Effect::Count("host_link_unexpected")),
        }
    }

    /// The host says `host` is down (`proof`) and which guests ran there, with the
    /// incarnation each had.
    fn on_host_down(
        &mut self,
        now: Duration,
        epoch: u64,
        host: String,
        proof: String,
        guests: Vec<(NodeId, u64)>,
    ) {
        self.out.push(super::Effect::Count("host_down_notices"));
        let mut changes = Vec::new();
        let mut named = Vec::new();
        for (id, incarnation) in guests {
            if id == self.membership.me() || !self.names.contains_key(&id) {
                continue;
            }
            named.push(id);
            // The host knew the incarnation that ran there; a newer one heard since is
            // not covered (prove_down refuses it).
            changes.extend(self.hold_dead(now, id, incarnation));
        }
        changes.extend(self.nodes.update(&self.membership.peers(now)));
        let (dead, kept): (Vec<NodeId>, Vec<NodeId>) = named
            .into_iter()
            .partition(|id| self.nodes.state_of(*id) == Some(GuestNodeState::Down));
        let dead: Vec<String> = dead.into_iter().map(|id| self.name(id)).collect();
        let kept: Vec<String> = kept.into_iter().map(|id| self.name(id)).collect();
        let mut message = format!(
            "{host} is DOWN ({proof}): {} died with it",
            if dead.is_empty() {
                "no partner of this guest".to_string()
            } else {
                dead.join(", ")
            }
        );
        if !kept.is_empty() {
            message.push_str(&format!(
                "; not taken for dead: {} (a newer incarnation was heard, or not heard \
                 since this agent started: hvctl node down once verified off)",
                kept.join(", ")
            ));
        }
        let node = self.own_name();
        self.record(
            Some(node),
            "host_down_notice",
            message,
            json!({ "host": host, "epoch": epoch, "nodes": dead, "not_taken": kept }),
        );
        self.after_node_changes(now, changes);
        if self.has_link {
            self.out
                .push(super::Effect::SendLink(LinkMessage::HostDownAck { epoch }));
        }
    }
}
