//! The guest agent's side of the host link: what its host agent says (host-down
//! notices, kill results) and the kill requests for silent partners.

use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{DownProof, GuestHeartbeat, NodeChange};
use hvcluster_common::config::guest::GuestConfig;
use hvcluster_common::config::NodeId;
use hvcluster_runtime::member::Member;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Agent, Input};

/// Wait of the higher node id before asking for a silent partner to be killed.
pub(super) const KILL_STAGGER: Duration = Duration::from_millis(500);
/// Pause before asking again for a kill that could not be asked.
const KILL_RETRY: Duration = Duration::from_millis(500);

impl Agent {
    /// Asks the host to kill silent partners whose request is due.
    pub(super) fn request_kills(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.kills_due.drain(..).partition(|(_, at, _)| *at <= now);
        self.kills_due = later;
        for (node, _, halt) in due {
            let state = self.nodes.state_of(node);
            if state == Some(GuestNodeState::Down)
                || (!halt && state != Some(GuestNodeState::LeftCluster))
            {
                continue;
            }
            let (Some(link), Some(host)) = (&self.link, &self.linked_to) else {
                // Not linked right now: ask again once the link is back.
                self.kills_due.push((node, now + KILL_RETRY, halt));
                continue;
            };
            let incarnation = self
                .nodes
                .views()
                .iter()
                .find(|v| v.id == node)
                .map_or(0, |v| v.incarnation);
            self.next_kill += 1;
            let request = self.next_kill;
            let message = hvcluster_common::hostlink::LinkMessage::KillRequest {
                request,
                cluster: self.config.cluster.name.clone(),
                node_id: node,
            };
            if link.try_send(message).is_ok() {
                self.kills_sent.insert(request, (node, incarnation));
                if !self.kills_reported.insert(node) {
                    continue;
                }
                let name = self.name(node);
                let host = host.clone();
                self.member.events.record(
                    Some(&name),
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
    }

    pub(super) fn on_link(&mut self, event: crate::link::LinkEvent) {
        use crate::link::LinkEvent;
        use hvcluster_common::hostlink::LinkMessage;
        let node = self.member.own_name.clone();
        match event {
            LinkEvent::Linked { host } => {
                self.member.events.record(
                    Some(&node),
                    "host_link",
                    format!("{node}: linked to the host agent of {host}"),
                    json!({ "host": host }),
                );
                self.linked_to = Some(host.clone());
                self.migration_linked(&host);
            }
            LinkEvent::Lost { why } => {
                // Answers to requests in flight are lost with the link: ask again.
                let now = Instant::now();
                let pending = std::mem::take(&mut self.kills_sent);
                for (_, (id, _)) in pending {
                    self.kills_due.push((id, now + KILL_RETRY, false));
                }
                self.member.events.record(
                    Some(&node),
                    "host_link_lost",
                    format!("{node}: no host link ({why}); retrying"),
                    json!({ "why": why }),
                );
                self.linked_to = None;
            }
            LinkEvent::Message(LinkMessage::HostDown {
                epoch,
                host,
                proof,
                guests,
            }) => {
                self.member.counters.bump("host_down_notices");
                let mut changes = Vec::new();
                let mut named = Vec::new();
                for (id, incarnation) in guests {
                    if id == self.member.me || self.member.configured_name(id).is_none() {
                        continue;
                    }
                    named.push(id);
                    // The host knew the incarnation that ran there; a newer one heard
                    // since is not covered (prove_down refuses it).
                    changes.extend(self.hold_dead(id, incarnation));
                }
                changes.extend(self.nodes.update(&self.membership.peers(self.now())));
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
                self.member.events.record(
                    Some(&node),
                    "host_down_notice",
                    message,
                    json!({ "host": host, "epoch": epoch, "nodes": dead, "not_taken": kept }),
                );
                self.after_node_changes(changes);
                if let Some(link) = &self.link {
                    let _ = link.try_send(LinkMessage::HostDownAck { epoch });
                }
            }
            LinkEvent::Message(LinkMessage::KillResult {
                request,
                ok,
                detail,
                retry_after_ms,
            }) => {
                let Some((id, incarnation)) = self.kills_sent.remove(&request) else {
                    return;
                };
                let name = self.name(id);
                if ok {
                    self.member.events.record(
                        Some(&name),
                        "node_killed",
                        format!("{name} was killed through the hosts ({detail})"),
                        json!({ "node": name, "detail": detail }),
                    );
                    let mut changes = self.hold_dead(id, incarnation);
                    changes.extend(self.nodes.update(&self.membership.peers(self.now())));
                    self.after_node_changes(changes);
                } else if retry_after_ms > 0 {
                    // Not now (its host is slow): ask again while it stays silent.
                    let at = Instant::now() + Duration::from_millis(retry_after_ms);
                    self.kills_due.push((id, at, false));
                } else {
                    self.member.events.record(
                        Some(&name),
                        "kill_failed",
                        format!("{name} could not be killed through the hosts: {detail}"),
                        json!({ "node": name, "detail": detail }),
                    );
                }
            }
            LinkEvent::Message(LinkMessage::MigrationPrepare { id, hold_ms }) => {
                self.on_migration_prepare(id, hold_ms);
            }
            LinkEvent::Message(LinkMessage::MigrationEnd { id }) => self.on_migration_end(id),
            LinkEvent::Message(other) => {
                tracing::debug!(message = ?other, "unexpected host-link message");
            }
        }
    }

    /// Node `id`, incarnation `incarnation`, is proved dead by its host (a host-down
    /// notice or a kill): held dead at once rather than after its silence. A node never
    /// heard since this agent started, or heard with a newer incarnation, is not covered.
    pub(super) fn hold_dead(&mut self, id: NodeId, incarnation: u64) -> Vec<NodeChange> {
        let incarnation = incarnation.max(1);
        let heard = self
            .nodes
            .views()
            .iter()
            .find(|v| v.id == id)
            .map_or(0, |v| v.incarnation);
        if heard != 0 && heard <= incarnation {
            // Should it still be heard, it must rejoin with a new incarnation.
            let now = self.now();
            let actions = self.membership.on_panic_notice(now, id);
            self.perform(actions);
        }
        self.nodes
            .prove_down(DownProof {
                node: id,
                incarnation,
            })
            .into_iter()
            .collect()
    }
}

/// Starts the host link when `[host_link]` configures one.
pub(super) fn start_host_link(
    config: &GuestConfig,
    member: &Member<Input, GuestHeartbeat>,
    key: Vec<u8>,
    node: &str,
    me: NodeId,
    incarnation: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Option<mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>> {
    use hvcluster_common::config::guest::HostLinkTransport;
    let link = &config.host_link;
    let port = link
        .port
        .unwrap_or(hvcluster_common::config::DEFAULT_HOST_LINK_PORT);
    let endpoint = match link.transport {
        HostLinkTransport::None => return Ok(None),
        HostLinkTransport::Tcp => crate::link::Endpoint::Tcp(std::net::SocketAddr::new(
            link.address.with_context(|| {
                "[host_link] transport = \"tcp\" needs the host agent's address: set \
                 [host_link] address or give --host-link-address"
            })?,
            port,
        )),
        HostLinkTransport::VirtioSerial => crate::link::Endpoint::Port(
            link.device
                .clone()
                .context("[host_link] transport = \"virtio-serial\" needs device")?,
        ),
        HostLinkTransport::Vsock => anyhow::bail!(
            "[host_link] transport = \"vsock\" is not available in this release: use \
             \"virtio-serial\" or \"tcp\" (or \"none\")"
        ),
    };
    let identity = crate::link::LinkIdentity {
        endpoint,
        key: hvcluster_runtime::link::LinkKey {
            cluster: config.cluster.name.clone(),
            key: hvcluster_runtime::intake::ClusterKey::new(key),
            cluster_id: config.cluster_id(),
        },
        node: node.to_string(),
        node_id: me,
        incarnation,
        domain: config.node(node).and_then(|n| n.domain.clone()),
        host_key: link.host_public_key().context(
            "[host_link] needs a valid host_public_key (printed by `hvctl config \
             host-link-key` on a host)",
        )?,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let outgoing = crate::link::spawn(identity, tx);
    let inputs = member.tx.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if inputs.send(Input::Link(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Some(outgoing))
}
