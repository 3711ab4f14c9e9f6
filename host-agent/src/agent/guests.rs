//! The host agent's side of the host link: what arrives on it goes to the host core
//! (registrations, acknowledged notices, kill requests), and the destroy of a guest the
//! core orders is run here.

use std::net::SocketAddr;

use anyhow::Context;
use std::time::{Duration, Instant};

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::host::{DestroyTarget, Event, Linked, NotRunningFacts};
use hvcluster_common::membership::Heartbeat;
use serde_json::json;

use super::destroy::{by_command, by_libvirt, shell_quote, Destroy};
use super::{Agent, Input};
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
                self.link_tx.insert(conn, tx);
                let guest = Linked {
                    cluster,
                    node,
                    node_id,
                    incarnation,
                    domain,
                };
                self.step(Event::GuestLinked { conn, guest });
            }
            LinkInput::Message { conn, message } => match message {
                LinkMessage::HostDownAck { epoch } => self.step(Event::HostDownAck { conn, epoch }),
                LinkMessage::KillRequest {
                    request,
                    cluster,
                    node_id,
                } => self.step(Event::KillRequest {
                    conn,
                    request,
                    cluster,
                    node_id,
                }),
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
                if self.core.links().guest(conn).is_some() {
                    self.step(Event::LinkClosed { conn, why });
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

    /// Destroys guest `guest` of this host for order `id` of host `from`: with
    /// `destroy_command` when it is configured, else through libvirt at `uri`.
    pub(super) fn destroy(&mut self, from: NodeId, id: u64, guest: DestroyTarget) {
        let timeout = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms);
        let domain = guest.domain.clone();
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

    /// A destroy ended: the core decides what it proves, with what this driver knows of
    /// the domain elsewhere (other hosts' domains, migrations).
    pub(super) fn on_destroyed(
        &mut self,
        from: NodeId,
        id: u64,
        ok: bool,
        detail: String,
        not_running: Option<String>,
    ) {
        let me = self.member.me;
        let facts = not_running
            .as_ref()
            .map(|d| NotRunningFacts {
                reported_elsewhere: self
                    .domain_holders()
                    .iter()
                    .any(|(h, ds)| *h != me && ds.iter().any(|x| &x.name == d || &x.uuid == d)),
                moving: self
                    .migrations
                    .all()
                    .iter()
                    .any(|l| !l.ended && (&l.name == d || &l.uuid == d)),
            })
            .unwrap_or_default();
        self.step(Event::Destroyed {
            from,
            order: id,
            ok,
            detail,
            not_running,
            facts,
        });
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
