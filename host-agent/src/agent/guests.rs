//! The host agent's side of the host link: linked guests, host-down notices, and
//! guests killed through the hosts (requests of linked guests, orders of other hosts,
//! the destroy itself).

use std::net::SocketAddr;

use anyhow::Context;
use std::time::{Duration, Instant};

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::membership::Heartbeat;
use serde_json::json;

use super::destroy::{by_command, by_libvirt, shell_quote, Destroy};
use super::{kills, Agent, Input, Linked, KILL_DEFER_MS};
use crate::member::Member;

impl Agent {
    pub(super) fn on_link(&mut self, input: crate::link::LinkInput) {
        use crate::link::LinkInput;
        use hvcluster_common::hostlink::LinkMessage;
        match input {
            LinkInput::Registered {
                conn,
                cluster,
                node,
                node_id,
                incarnation,
                domain,
                tx,
            } => {
                self.member.counters.bump("guests_linked");
                self.member.events.record(
                    Some(&node),
                    "guest_linked",
                    format!(
                        "{node} of guest cluster {cluster} linked{}",
                        domain
                            .as_ref()
                            .map(|d| format!(" (domain {d})"))
                            .unwrap_or_default()
                    ),
                    json!({ "cluster": cluster, "node_id": node_id, "incarnation": incarnation, "domain": domain }),
                );
                self.links.register(
                    conn,
                    Linked {
                        cluster,
                        node,
                        node_id,
                        incarnation,
                        domain,
                    },
                );
                self.link_tx.insert(conn, tx);
                // Others learn at once who runs here; a guest linking after a host
                // went down is owed its notice now.
                self.send_heartbeats();
                self.send_notices();
            }
            LinkInput::Message { conn, message } => match message {
                LinkMessage::HostDownAck { epoch } => {
                    if self.links.on_ack(conn, epoch) {
                        self.member.counters.bump("host_down_notices_acked");
                    }
                }
                LinkMessage::KillRequest {
                    request,
                    cluster,
                    node_id,
                } => self.on_kill_request(conn, request, cluster, node_id),
                LinkMessage::MigrationAnswer { id, ok, detail } => {
                    self.on_migration_answer(conn, id, ok, detail)
                }
                other => tracing::debug!(conn, message = ?other, "unexpected host-link message"),
            },
            LinkInput::ClaimRefused {
                conn,
                cluster,
                node,
                reason,
            } => {
                self.member.record_limited(
                    "guest_claims_refused",
                    None,
                    "guest_claim_refused",
                    |since| {
                        format!(
                            "refused {since} host-link registration(s) since the last report: {reason}"
                        )
                    },
                    json!({ "conn": conn, "cluster": cluster, "node": node, "why": reason }),
                );
            }
            LinkInput::Closed { conn, guest, why } => {
                self.link_tx.remove(&conn);
                if let Some(g) = self.links.closed(conn, self.now()) {
                    self.member.events.record(
                        Some(&g.node),
                        "guest_unlinked",
                        format!(
                            "{} of guest cluster {}: link closed ({why})",
                            g.node, g.cluster
                        ),
                        json!({ "cluster": g.cluster, "why": why }),
                    );
                    self.send_heartbeats();
                } else if let Some(who) = guest {
                    // A guest can repeat this at will: logged at most once a period.
                    if let Some(since) = self
                        .member
                        .counters
                        .bump_logged("host_links_unregistered", Instant::now())
                    {
                        tracing::info!(%who, %why, closed = since, "host link closed before registration completed");
                    }
                } else {
                    self.member.record_limited(
                        "host_links_refused",
                        None,
                        "host_link_refused",
                        |since| {
                            format!("refused {since} host link(s) since the last report: {why}")
                        },
                        json!({ "why": why }),
                    );
                }
            }
            LinkInput::Refused(tally) => {
                self.member
                    .counters
                    .add("host_links_refused_per_source", tally.per_source);
                self.member
                    .counters
                    .add("host_links_refused_total", tally.total);
                let text = tally.describe();
                let from = tally.last.map(|(ip, _)| ip.to_string());
                self.member.record_limited(
                    "host_link_refusal_reports",
                    None,
                    "host_link_over_cap",
                    |_| text,
                    json!({ "per_source": tally.per_source, "total": tally.total, "last_from": from }),
                );
            }
        }
    }

    /// A linked guest asks for a silent partner to be killed.
    pub(super) fn on_kill_request(
        &mut self,
        conn: u64,
        request: u64,
        cluster: String,
        node_id: NodeId,
    ) {
        let Some(asker) = self.links.guest(conn).cloned() else {
            return;
        };
        // A guest may send refused requests as fast as it likes: they are counted,
        // and recorded at most once every 10 s.
        let refuse = |this: &mut Self, why: String| {
            this.member.record_limited(
                "kill_requests_refused",
                Some(&asker.node),
                "kill_refused",
                |since| {
                    let more = if since > 1 {
                        format!(" ({since} refused since the last report)")
                    } else {
                        String::new()
                    };
                    format!(
                        "{} of {}: kill request refused: {why}{more}",
                        asker.node, asker.cluster
                    )
                },
                json!({ "cluster": cluster, "node_id": node_id, "why": why }),
            );
            this.send_kill_result(conn, request, false, why, 0);
        };
        // Only a member of the asker's own guest cluster, as the hosts know it.
        let identity = hvcluster_common::link_identity::Identity {
            cluster: asker.cluster.clone(),
            node: asker.node.clone(),
            node_id: asker.node_id,
            domain: asker.domain.clone().unwrap_or_default(),
        };
        let allowed = self
            .config
            .guest_clusters
            .iter()
            .find(|g| g.name == asker.cluster)
            .map(|g| {
                hvcluster_common::link_identity::kill_target(g, &identity, &cluster, node_id)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|| {
                Err(format!(
                    "guest cluster {} is not served here",
                    asker.cluster
                ))
            });
        if let Err(why) = allowed {
            return refuse(self, why);
        }
        if !self.admit_kill(conn, request, &asker, &cluster, node_id) {
            return;
        }
        let Some(target_host) = self.links.locate(&cluster, node_id) else {
            return refuse(
                self,
                format!("no host reports node {node_id} of {cluster} linked: it cannot be found"),
            );
        };
        let me = self.member.me;
        // A host that reports itself slow (its load watchdog) may only be making its
        // guests late: they are not killed for it while the host cluster judges it.
        let verdict = if target_host == me {
            self.membership.watchdog()
        } else {
            self.membership
                .peers(self.now())
                .into_iter()
                .find(|p| p.node == target_host)
                .map(|p| p.watchdog)
                .unwrap_or_default()
        };
        if !matches!(verdict, hvcluster_common::membership::WatchdogVerdict::Ok) {
            let host = self.name(target_host);
            let why = format!(
                "its host {host} reports itself {}: the guest may only be late; ask again later",
                crate::describe::verdict_text(verdict)
            );
            self.member.record_limited(
                "kill_requests_deferred",
                Some(&asker.node),
                "kill_deferred",
                |since| {
                    format!(
                        "{} of {}: kill of node {node_id} deferred ({since} request(s) since the \
                         last report): {why}",
                        asker.node, asker.cluster
                    )
                },
                json!({ "cluster": cluster, "node_id": node_id, "host": host }),
            );
            self.send_kill_result(conn, request, false, why, KILL_DEFER_MS);
            return;
        }
        if target_host != me {
            let state = self
                .membership
                .peers(self.now())
                .into_iter()
                .find(|p| p.node == target_host)
                .map(|p| p.state);
            if !matches!(state, Some(hvcluster_common::membership::HostState::Up)) {
                let host = self.name(target_host);
                return refuse(
                    self,
                    format!(
                        "its host {host} is not Up: the host cluster fences {host} and the guests are told when it is DOWN"
                    ),
                );
            }
        }
        self.member.counters.bump("kill_requests");
        let target = (cluster.clone(), node_id);
        let order = self
            .kills
            .give(self.now(), conn, request, target_host, cluster, node_id);
        let incarnation = self.links.incarnation_of(&target.0, node_id);
        self.kills.gate.ordered(&target, order.id, incarnation);
        let host = self.name(target_host);
        self.member.events.record(
            Some(&asker.node),
            "kill_requested",
            format!(
                "{} asks for node {node_id} of {} to be killed; it runs on {host}",
                asker.node, asker.cluster
            ),
            json!({ "cluster": asker.cluster, "node_id": node_id, "host": host, "order": order.id }),
        );
        if target_host == me {
            self.destroy(me, order);
        } else {
            self.send_heartbeats();
        }
    }

    /// Destroys a guest of this host for an order of host `from`: with
    /// `destroy_command` when it is configured, else through libvirt at `uri`.
    pub(super) fn destroy(&mut self, from: NodeId, order: hvcluster_common::hostlink::KillOrder) {
        let id = order.id;
        let Some(guest) = self
            .links
            .known_here(&order.cluster, order.node_id)
            .cloned()
        else {
            let detail = format!(
                "node {} of {} never linked to {}",
                order.node_id, order.cluster, self.member.own_name
            );
            self.on_destroyed(from, id, false, detail, None);
            return;
        };
        let timeout = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms);
        let domain = guest.domain.clone().unwrap_or_else(|| guest.node.clone());
        let node = guest.node.clone();
        let (how, work): (String, Destroy) =
            if let Some(template) = &self.config.hypervisor.destroy_command {
                // What a guest registered is untrusted: each value goes into the command
                // single-quoted (and registration refuses names outside a safe alphabet).
                let command = template
                    .replace("{domain}", &shell_quote(&domain))
                    .replace("{node}", &shell_quote(&guest.node))
                    .replace("{cluster}", &shell_quote(&guest.cluster))
                    .replace("{host}", &shell_quote(&self.member.own_name));
                let work = Box::pin(by_command(command.clone(), node, timeout));
                (command, work)
            } else if let Some(libvirt) = self.libvirt.clone() {
                let nmi = self
                    .config
                    .hypervisor
                    .kill_nmi_ms
                    .map(Duration::from_millis);
                let how = match nmi {
                    Some(wait) => format!(
                        "libvirt NMI into domain {domain}, {} ms for its crash dump, then destroy",
                        wait.as_millis()
                    ),
                    None => format!("libvirt destroy of domain {domain}"),
                };
                (
                    how,
                    Box::pin(by_libvirt(libvirt, domain, node, nmi, timeout)),
                )
            } else {
                let detail = format!(
                    "{} has neither [hypervisor] destroy_command nor uri: it cannot destroy {}",
                    self.member.own_name, guest.node
                );
                self.on_destroyed(from, id, false, detail, None);
                return;
            };
        let by = self.name(from);
        self.member.events.record(
            Some(&guest.node),
            "guest_destroying",
            format!("{}: destroying it for {by}: {how}", guest.node),
            json!({ "cluster": guest.cluster, "by": by, "command": how }),
        );
        let tx = self.member.tx.clone();
        self.member.spawn(async move {
            let (ok, detail, not_running) = work.await;
            let _ = tx
                .send(Input::Destroyed {
                    from,
                    id,
                    ok,
                    detail,
                    not_running,
                })
                .await;
        });
    }

    /// A destroy ended. A domain that was not running here is dead all the same when no
    /// host not proved down reports it and it is not being moved: it runs nowhere.
    pub(super) fn on_destroyed(
        &mut self,
        from: NodeId,
        id: u64,
        ok: bool,
        detail: String,
        not_running: Option<String>,
    ) {
        let nowhere = not_running.filter(|d| {
            let me = self.member.me;
            let elsewhere = self
                .domain_holders()
                .iter()
                .any(|(h, ds)| *h != me && ds.iter().any(|x| &x.name == d || &x.uuid == d));
            let moving = self
                .migrations
                .all()
                .iter()
                .any(|l| !l.ended && (&l.name == d || &l.uuid == d));
            let linked_now = self
                .links
                .local()
                .any(|(_, g)| g.domain.as_deref() == Some(d.as_str()));
            hvcluster_common::link_identity::not_running_proves_dead(elsewhere, moving, linked_now)
        });
        let (ok, detail) = match nowhere {
            Some(d) => (
                true,
                format!("domain {d} is off here and no host reports it running: it is dead"),
            ),
            None => (ok, detail),
        };
        self.member.events.record(
            Some(&self.member.own_name),
            if ok {
                "guest_destroyed"
            } else {
                "guest_destroy_failed"
            },
            detail.clone(),
            json!({ "order": id, "by": self.name(from), "ok": ok }),
        );
        if from == self.member.me {
            if let Some(given) = self.kills.settle(id) {
                self.kill_result(&given, ok, detail);
            }
        } else {
            self.kills.executed(self.now(), from, id, ok, detail);
            self.send_heartbeats();
        }
    }

    /// Tells the guest that asked what became of its request.
    pub(super) fn kill_result(&mut self, given: &kills::Given, ok: bool, detail: String) {
        let now = self.now();
        for (conn, request) in self.kills.gate.settled(now, given.order.id, ok, &detail) {
            if (conn, request) != (given.conn, given.request) {
                self.send_kill_result(conn, request, ok, detail.clone(), 0);
            }
        }
        self.send_kill_result(given.conn, given.request, ok, detail, 0);
    }

    /// Sends a kill result to the guest on `conn`, if it is still linked.
    pub(super) fn send_kill_result(
        &self,
        conn: u64,
        request: u64,
        ok: bool,
        detail: String,
        retry_after_ms: u64,
    ) {
        if let Some(tx) = self.link_tx.get(&conn) {
            let _ = tx.try_send(hvcluster_common::hostlink::LinkMessage::KillResult {
                request,
                ok,
                detail,
                retry_after_ms,
            });
        }
    }

    /// Orders unanswered for too long are reported failed to the guests that asked.
    pub(super) fn expire_kills(&mut self) {
        // The target host may wait for a crash dump before its destroy (kill_nmi_ms).
        let limit = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms)
            + Duration::from_millis(self.config.hypervisor.kill_nmi_ms.unwrap_or(0))
            + Duration::from_secs(10);
        for given in self.kills.expired(self.now(), limit) {
            let host = self.name(given.order.target_host);
            self.kill_result(&given, false, format!("no answer from {host}"));
        }
    }

    /// Sends the host-down notices that are due to linked guests.
    pub(super) fn send_notices(&mut self) {
        if self.link_tx.is_empty() {
            return;
        }
        let downs = self.fence.down_records();
        if downs.is_empty() {
            return;
        }
        let member = &self.member;
        let name = |n: NodeId| member.name(n);
        let due = self.links.due(self.now(), &downs, name, |r| {
            crate::fence::proof_text(r, |n| member.name(n))
        });
        for out in due {
            let Some(tx) = self.link_tx.get(&out.conn) else {
                continue;
            };
            if let hvcluster_common::hostlink::LinkMessage::HostDown {
                host,
                guests,
                epoch,
                ..
            } = &out.message
            {
                let guest = self
                    .links
                    .local()
                    .find(|(c, _)| **c == out.conn)
                    .map(|(_, g)| g.node.clone())
                    .unwrap_or_default();
                if out.first {
                    self.member.counters.bump("host_down_notices");
                    self.member.events.record(
                        Some(&guest),
                        "host_down_notice",
                        format!(
                            "{guest}: told that {host} is DOWN and {} partner(s) died with it (notice {epoch})",
                            guests.len()
                        ),
                        json!({ "host": host, "epoch": epoch, "guests": guests }),
                    );
                } else {
                    self.member.counters.bump("host_down_notices_repeated");
                }
            }
            if tx.try_send(out.message).is_err() {
                tracing::warn!(
                    conn = out.conn,
                    "host link busy or closed: the notice is repeated later"
                );
            }
        }
    }
}

/// Listens for host links on this host's `link_address`, when it has one, with the keys
/// of the configured guest clusters.
pub(super) fn start_host_link(
    config: &ClusterConfig,
    member: &mut Member<Input, Heartbeat>,
    host: &str,
    incarnation: u64,
    incoming: crate::link::IncomingGuests,
    signing: hvcluster_common::hostseal::HostSigningKey,
) -> anyhow::Result<()> {
    let address = config.host(host).and_then(|h| h.link_address);
    let channels = config.host_link.channel_dir.clone();
    if address.is_none() && channels.is_none() {
        return Ok(());
    }
    let mut keys = Vec::new();
    for g in &config.guest_clusters {
        let key = hvcluster_common::config::read_key_file(&g.key_file).with_context(|| {
            format!(
                "cannot read the key of guest cluster {} ({})",
                g.name,
                g.key_file.display()
            )
        })?;
        keys.push(crate::link::LinkKey {
            cluster: g.name.clone(),
            key: crate::intake::ClusterKey::new(key),
            cluster_id: hvcluster_common::config::cluster_id_of(&g.name),
        });
    }
    let keys = std::sync::Arc::new(keys);
    let me = crate::link::ServerIdentity {
        host: host.to_string(),
        node_id: member.me,
        incarnation,
        incoming,
        limits: crate::link::limits::LinkLimits::from_config(&config.host_link),
        guest_clusters: std::sync::Arc::new(config.guest_clusters.clone()),
        signing: Some(signing),
    };
    if address.is_some() {
        crate::daemon::check_fd_limit(u64::from(config.host_link.max_connections));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    if let Some(address) = address {
        let addr = SocketAddr::new(address, config.host_link.port);
        let std_listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen for host links on {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        member.spawn(crate::link::serve(
            listener,
            keys.clone(),
            me.clone(),
            tx.clone(),
        ));
        tracing::info!(%addr, guest_clusters = config.guest_clusters.len(), "listening for host links");
    }
    if let Some(dir) = channels {
        let dir: std::path::PathBuf = dir.to_string_lossy().replace("{host}", host).into();
        tracing::info!(dir = %std::path::Path::display(&dir), "serving host links on virtio-serial channels");
        member.spawn(crate::link::serve_channels(dir, keys, me, tx));
    }
    let inputs = member.tx.clone();
    member.spawn(async move {
        while let Some(input) = rx.recv().await {
            if inputs.send(Input::Link(input)).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
