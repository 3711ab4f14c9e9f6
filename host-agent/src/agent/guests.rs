//! The host agent's side of the host link: linked guests, host-down notices, and
//! guests killed through the hosts (requests of linked guests, orders of other hosts,
//! the destroy itself).

use std::net::SocketAddr;

use anyhow::Context;
use std::time::Duration;

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::membership::Heartbeat;
use serde_json::json;

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
                    tracing::info!(%who, %why, "host link closed before registration completed");
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
        let refuse = |this: &mut Self, why: String| {
            this.member.counters.bump("kill_requests_refused");
            this.member.events.record(
                Some(&asker.node),
                "kill_refused",
                format!(
                    "{} of {}: kill request refused: {why}",
                    asker.node, asker.cluster
                ),
                json!({ "cluster": cluster, "node_id": node_id, "why": why }),
            );
            this.send_kill_result(conn, request, false, why, 0);
        };
        if cluster != asker.cluster {
            return refuse(
                self,
                format!(
                    "a guest of {} may only ask to kill guests of its own guest cluster, not of {cluster}",
                    asker.cluster
                ),
            );
        }
        if node_id == asker.node_id {
            return refuse(self, "a guest cannot ask to kill itself".into());
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
        let order = self
            .kills
            .give(self.now(), conn, request, target_host, cluster, node_id);
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
            !elsewhere && !moving
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
/// A destroy under way: whether the guest is off, and what happened.
/// How a destroy ended: off, and what happened; `Some(domain)` when the domain was not
/// running here (no proof by itself: it may run elsewhere).
type Destroy =
    std::pin::Pin<Box<dyn std::future::Future<Output = (bool, String, Option<String>)> + Send>>;

/// Runs the destroy command of guest `node`.
async fn by_command(
    command: String,
    node: String,
    timeout: Duration,
) -> (bool, String, Option<String>) {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(&command);
    let (ok, detail) = match crate::child::run_bounded(cmd, None, timeout).await {
        Ok(run) if run.exit == Some(0) => (true, format!("{node} destroyed")),
        Ok(run) if run.timed_out => (
            false,
            format!("destroy command timed out after {timeout:?}"),
        ),
        Ok(run) => (
            false,
            format!(
                "destroy command failed ({}): {}",
                run.exit
                    .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}")),
                crate::child::last_line(&run.stderr_tail).unwrap_or("")
            ),
        ),
        Err(e) => (false, format!("cannot run the destroy command: {e}")),
    };
    (ok, detail, None)
}

/// Destroys `domain` (guest `node`) through libvirt, off the async threads. With `nmi`,
/// first injects an NMI (a guest set up for it panics into its crash kernel and writes a
/// dump) and waits that long; a guest that cannot take one is destroyed at once.
async fn by_libvirt(
    libvirt: std::sync::Arc<crate::hypervisor::Libvirt>,
    domain: String,
    node: String,
    nmi: Option<Duration>,
    timeout: Duration,
) -> (bool, String, Option<String>) {
    if let Some(wait) = nmi {
        let (hv, name) = (libvirt.clone(), domain.clone());
        let call = tokio::task::spawn_blocking(move || hv.inject_nmi(&name));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(Ok(()))) => tokio::time::sleep(wait).await,
            Ok(Ok(Err(e))) => tracing::warn!(%domain, "no NMI, destroying at once: {e}"),
            _ => tracing::warn!(%domain, "the NMI call did not return, destroying at once"),
        }
    }
    let name = domain.clone();
    let call = tokio::task::spawn_blocking(move || libvirt.destroy(&name));
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(Ok(crate::hypervisor::Destroyed::Now))) => {
            (true, format!("{node} destroyed (domain {domain})"), None)
        }
        Ok(Ok(Ok(crate::hypervisor::Destroyed::WasNotRunning))) => (
            false,
            format!("domain {domain} is not running on this host: nothing proved"),
            Some(domain),
        ),
        Ok(Ok(Err(e))) => (false, e, None),
        Ok(Err(e)) => (false, format!("libvirt call failed: {e}"), None),
        Err(_) => (
            false,
            format!("libvirt did not answer within {timeout:?}"),
            None,
        ),
    }
}

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
        signing: Some(signing),
    };
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

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod quote_tests {
    /// Whatever a guest registers, it stays one word of the destroy command.
    #[test]
    pub(super) fn registered_values_stay_one_shell_word() {
        for hostile in [
            "vm1",
            "a b",
            "x'; touch /tmp/owned; echo '",
            "$(reboot)",
            "`id`",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", super::shell_quote(hostile)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
        }
    }
}
