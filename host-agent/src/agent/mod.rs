//! The agent's driver loop: owns the membership machine, feeds it what arrives and
//! performs what it returns.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::admin::HostStatus;
use hvcluster_common::config::{ClusterConfig, LoadedConfig, NodeId};
use hvcluster_common::kdump;
use hvcluster_common::membership::{
    Action, Heartbeat, Membership, MembershipConfig, MembershipEvent, WatchdogVerdict,
};
use serde_json::json;

mod kills;
mod links;

/// How long a guest waits before asking again to kill a guest of a slow host, ms.
const KILL_DEFER_MS: u64 = 1000;
mod status;

use kills::Kills;
use links::{Linked, Links};

use crate::admin::{self, AdminCall};
use crate::fence::FenceDriver;
use crate::member::Member;
use crate::net::{self, Datagram, Roster};
use crate::process::Prepared;
use crate::{incarnation, operator, watchdog};

/// What the driver loop receives from its tasks.
#[derive(Debug)]
pub enum Input {
    /// A datagram on a heartbeat socket.
    Frame(Datagram),
    /// A datagram on the kdump port.
    Kdump {
        /// Source address.
        from: SocketAddr,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The load watchdog changed its verdict.
    Watchdog(WatchdogVerdict),
    /// An admin client wants the status, or gives an operator command
    /// ([`crate::operator`]).
    Admin(AdminCall<HostStatus>),
    /// Something happened on a host link.
    Link(crate::link::LinkInput),
    /// The hypervisor's list of domains, or why it could not be had.
    Domains(Result<Vec<crate::hypervisor::DomainInfo>, String>),
    /// A destroy command ended: for the order `id` of host `from` (this host's own
    /// order when `from` is this host).
    Destroyed {
        /// Host that gave the order.
        from: NodeId,
        /// The order.
        id: u64,
        /// The guest is off.
        ok: bool,
        /// What happened.
        detail: String,
    },
    /// A fence level finished.
    FenceResult {
        /// The host fenced.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Every device powered it off and confirmed OFF.
        ok: bool,
        /// What each device did.
        detail: String,
    },
}

/// A running host agent.
pub struct Agent {
    config: ClusterConfig,
    member: Member<Input, Heartbeat>,
    membership: Membership,
    fence: FenceDriver,
    kdump_sources: HashMap<IpAddr, NodeId>,
    prepared: Prepared,
    links: Links,
    kills: Kills,
    /// This host's hypervisor, when `[hypervisor] uri` is given.
    libvirt: Option<std::sync::Arc<crate::hypervisor::Libvirt>>,
    /// Domains that may run here, as the hypervisor last listed them.
    domains: Vec<hvcluster_common::hostlink::DomainPresence>,
    /// Domains the other hosts reported last.
    remote_domains:
        std::collections::BTreeMap<NodeId, Vec<hvcluster_common::hostlink::DomainPresence>>,
    /// Why the hypervisor cannot be asked, while it cannot.
    hypervisor_problem: Option<String>,
    /// Domains seen running on several hosts (UUID and hosts), reported once.
    double_runs: std::collections::BTreeSet<(String, Vec<NodeId>)>,
    link_tx: HashMap<u64, tokio::sync::mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("host", &self.member.own_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Binds every socket and starts the receiving tasks, the watchdog and the admin
    /// server. Fails with a clear message when a socket cannot be bound.
    pub async fn start(
        loaded: LoadedConfig,
        host: &str,
        prepared: Prepared,
    ) -> anyhow::Result<Agent> {
        let LoadedConfig {
            config,
            key,
            digest,
        } = loaded;
        let hosts = config
            .hosts
            .iter()
            .map(|h| (h.node_id, h.name.as_str(), &h.addresses));
        let roster = Roster::new(key, config.cluster_id(), host, &config.interconnects, hosts)?;
        let mut member = Member::start(roster, "heartbeat", Input::Frame)?;
        let me = member.me;
        if config.kdump.enabled {
            let addr = SocketAddr::new(config.kdump.listen, config.kdump.port);
            let socket = net::bind_udp(addr, "kdump notice")?;
            member.spawn(crate::kdump::listen(socket, member.tx.clone()));
        }
        let kdump_sources = config
            .hosts
            .iter()
            .flat_map(|h| net::host_addresses(h).map(move |a| (a, h.node_id)))
            .collect();
        let dispatch = admin::HostDispatch(member.tx.clone());
        member.serve_admin(&config.admin.socket, dispatch)?;
        watchdog::spawn((&config.load_watchdog).into(), member.tx.clone())
            .context("cannot start the load watchdog")?;

        let incarnation = incarnation::next(&config.cluster.state_dir);
        start_host_link(&config, &mut member, host, incarnation)?;
        let notice_retry = Duration::from_millis(config.host_link.notice_retry_ms);
        let libvirt = config.hypervisor.uri.as_ref().map(|u| {
            std::sync::Arc::new(crate::hypervisor::Libvirt::new(&u.replace("{host}", host)))
        });
        if let Some(libvirt) = &libvirt {
            member.spawn(poll_domains(libvirt.clone(), member.tx.clone()));
        }
        let (fence, restored) =
            FenceDriver::open(&config, me, member.tx.clone()).with_context(|| {
                format!(
                    "cannot open the fencing journal in {}",
                    config.cluster.state_dir.display()
                )
            })?;
        let membership = Membership::new(
            MembershipConfig::from_cluster(&config, me, digest),
            incarnation,
            member.now(),
        );
        let events = &member.events;
        events.record(
            Some(host),
            "started",
            format!(
                "agent started (incarnation {incarnation}, realtime {}, memory locked {})",
                prepared.realtime, prepared.memory_locked
            ),
            json!({ "incarnation": incarnation, "realtime": prepared.realtime, "memory_locked": prepared.memory_locked }),
        );
        for r in &restored {
            let n = config
                .host_by_id(r.target)
                .map(|h| h.name.clone())
                .unwrap_or_default();
            events.record(
                Some(&n),
                "host_down_restored",
                format!("{n}: DOWN (restored from the fencing journal)"),
                serde_json::to_value(r).unwrap_or_default(),
            );
        }
        Ok(Agent {
            config,
            member,
            membership,
            fence,
            kdump_sources,
            prepared,
            links: Links::new(me, notice_retry),
            kills: Kills::default(),
            libvirt,
            domains: Vec::new(),
            remote_domains: std::collections::BTreeMap::new(),
            hypervisor_problem: None,
            double_runs: std::collections::BTreeSet::new(),
            link_tx: HashMap::new(),
        })
    }

    /// Runs until `shutdown` completes, then stops every task and removes the socket.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(self.config.heartbeat.interval_ms);
        let period = (interval / 8).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(input) = self.member.next_input() => self.on_input(input),
                _ = ticker.tick() => {
                    let actions = self.membership.tick(self.now());
                    self.perform(actions);
                    let now = self.now();
                    let view = FenceDriver::view(&self.membership, now);
                    let events = self.fence.tick(now, &view);
                    self.report_fence(events);
                    self.send_notices();
                    self.expire_kills();
                    // Who counts as live changes with the membership.
                    if !self.remote_domains.is_empty() {
                        self.check_double_runs();
                    }
                }
            }
        }
        let member = &mut self.member;
        member.events.record(
            Some(&member.own_name),
            "stopped",
            "agent stopping".into(),
            json!({}),
        );
        member.stop();
        Ok(())
    }

    fn now(&self) -> Duration {
        self.member.now()
    }

    fn name(&self, id: NodeId) -> String {
        self.member.name(id)
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Frame(datagram) => self.on_frame(&datagram),
            Input::Kdump { from, bytes } => self.on_kdump(from, &bytes),
            Input::Watchdog(verdict) => {
                let before = self.membership.watchdog();
                self.membership.set_watchdog(verdict);
                if std::mem::discriminant(&before) != std::mem::discriminant(&verdict) {
                    self.member.events.record(
                        Some(&self.member.own_name),
                        "watchdog",
                        format!("load watchdog: {}", crate::describe::verdict_text(verdict)),
                        serde_json::to_value(verdict).unwrap_or_default(),
                    );
                }
            }
            Input::Admin(AdminCall::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            Input::Admin(AdminCall::Operator {
                request: hvcluster_common::admin::Request::VmStart { name },
                reply,
            }) => self.vm_start(name, reply),
            Input::Admin(AdminCall::Operator { request, reply }) => {
                let cx = operator::Ctx {
                    now: self.now(),
                    config: &self.config,
                    me: self.member.me,
                    membership: &self.membership,
                    fence: &mut self.fence,
                    events: &self.member.events,
                };
                let (events, answer) = operator::handle(cx, request, reply);
                self.report_fence(events);
                answer.send();
            }
            Input::Link(input) => self.on_link(input),
            Input::Domains(listed) => self.on_domains(listed),
            Input::Destroyed {
                from,
                id,
                ok,
                detail,
            } => self.on_destroyed(from, id, ok, detail),
            Input::FenceResult {
                target,
                level,
                ok,
                detail,
            } => {
                let events = self
                    .fence
                    .on_level_result(self.now(), target, level, ok, detail);
                self.report_fence(events);
            }
        }
    }

    fn on_frame(&mut self, datagram: &Datagram) {
        let Some(hb) = self.member.receive(datagram) else {
            return;
        };
        let now = self.member.clock_at(datagram.at);
        let actions =
            self.membership
                .on_heartbeat(now, hb.sender, hb.incarnation, hb.accepted, &hb.payload);
        self.perform(actions);
        self.links.on_heartbeat(hb.sender, &hb.payload.guests);
        if self.remote_domains.get(&hb.sender) != Some(&hb.payload.domains) {
            self.remote_domains
                .insert(hb.sender, hb.payload.domains.clone());
            self.check_double_runs();
        }
        let me = self.member.me;
        for order in self
            .kills
            .new_orders(me, hb.sender, &hb.payload.kill_orders)
        {
            self.destroy(hb.sender, order);
        }
        for (given, answer) in self.kills.settled(me, &hb.payload.kill_answers) {
            self.kill_result(&given, answer.ok, answer.detail);
        }
        if !hb.payload.down.is_empty() {
            let events = self
                .fence
                .on_peer_downs(&hb.payload.down, &self.membership, now);
            self.report_fence(events);
        }
    }

    fn on_kdump(&mut self, from: SocketAddr, bytes: &[u8]) {
        if let Err(e) = kdump::parse_notice(bytes) {
            if self
                .member
                .counters
                .bump_logged("kdump_malformed", Instant::now())
                .is_some()
            {
                tracing::warn!(from = %from, cause = %e, "malformed datagram on the kdump port");
            }
            return;
        }
        let Some(&node) = self.kdump_sources.get(&from.ip()) else {
            self.member.record_limited(
                "kdump_refused",
                None,
                "kdump_refused",
                |since| {
                    format!(
                        "ignored {since} panic notice(s) from {} which is no host's address",
                        from.ip()
                    )
                },
                json!({ "from": from.to_string() }),
            );
            return;
        };
        if node == self.member.me {
            self.member.counters.bump("kdump_own");
            return;
        }
        self.member.counters.bump("kdump_accepted");
        let name = self.name(node);
        let first = !self
            .membership
            .peers(self.now())
            .iter()
            .any(|p| p.node == node && p.panic_noticed);
        if first {
            self.member.events.record(
                Some(&name),
                "kdump_notice",
                format!("{name}: panic notice received from {}", from.ip()),
                json!({ "from": from.to_string() }),
            );
        }
        let actions = self.membership.on_panic_notice(self.now(), node);
        self.perform(actions);
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendHeartbeats => self.send_heartbeats(),
                Action::Event(e) => self.report(e),
                Action::Rejoin => {
                    let more = self.member.rejoin(
                        &mut self.membership,
                        &self.config.cluster.state_dir,
                        "rejoined",
                        |_, inc| format!("rejoining the cluster with incarnation {inc}"),
                    );
                    self.perform(more);
                }
            }
        }
    }

    fn send_heartbeats(&mut self) {
        for ic in 0..self.member.outbox.interconnects() {
            let mut hb = self.membership.heartbeat(ic);
            hb.down = self.fence.down_records();
            hb.guests = self.links.presence();
            hb.kill_orders = self.kills.orders();
            hb.domains = self.domains.clone();
            hb.kill_answers = self.kills.answers(self.member.now());
            let report = self
                .member
                .outbox
                .send(ic, self.membership.incarnation(), &hb);
            self.member.counters.add("heartbeats_sent", report.sent);
            for failure in report.failed {
                let name = format!("send_errors_{}", self.config.interconnects[ic].name);
                if self
                    .member
                    .counters
                    .bump_logged(&name, Instant::now())
                    .is_some()
                {
                    tracing::warn!(to = %failure.to, peer = %self.name(failure.peer), cause = %failure.cause, "cannot send heartbeat");
                }
            }
        }
    }

    fn report_fence(&mut self, events: Vec<hvcluster_common::fencing::FenceEvent>) {
        // A new DOWN goes out at once rather than with the next regular heartbeat.
        let news = events
            .iter()
            .any(|e| matches!(e, hvcluster_common::fencing::FenceEvent::Down(_)));
        for e in events {
            let (subject, kind, message) = crate::fence::describe(&e, |n| self.name(n));
            self.member.events.record(
                Some(&subject),
                kind,
                message,
                serde_json::to_value(&e).unwrap_or_default(),
            );
        }
        if news {
            self.send_heartbeats();
        }
    }

    fn on_link(&mut self, input: crate::link::LinkInput) {
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
                other => tracing::debug!(conn, message = ?other, "unexpected host-link message"),
            },
            LinkInput::Closed { conn, guest, why } => {
                self.link_tx.remove(&conn);
                if let Some(g) = self.links.closed(conn) {
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

    /// `hvctl vm start NAME`: starts the domain here unless it runs anywhere in the
    /// cluster already.
    fn vm_start(
        &mut self,
        name: String,
        reply: tokio::sync::oneshot::Sender<hvcluster_common::admin::Response>,
    ) {
        use hvcluster_common::admin::Response;
        let Some(libvirt) = self.libvirt.clone() else {
            let message = "this host has no [hypervisor] uri: it cannot start domains".to_string();
            let _ = reply.send(Response::Refused { message });
            return;
        };
        let me = self.member.me;
        let running_on = self
            .live_domains()
            .into_iter()
            .find(|(_, ds)| ds.iter().any(|d| d.name == name || d.uuid == name))
            .map(|(h, _)| h);
        let own = self.member.own_name.clone();
        if let Some(host) = running_on {
            let where_ = if host == me {
                "here".to_string()
            } else {
                format!("on {}", self.name(host))
            };
            let message = format!(
                "{name} already runs {where_}: starting it on {own} too would run it twice"
            );
            self.member.events.record(
                Some(&name),
                "operator",
                format!("operator: hvctl vm start {name}: refused: {message}"),
                json!({ "command": "hvctl vm start", "domain": name, "accepted": false }),
            );
            let _ = reply.send(Response::Refused { message });
            return;
        }
        let events = self.member.events.clone();
        self.member.spawn(async move {
            let n = name.clone();
            let call = tokio::task::spawn_blocking(move || libvirt.start(&n));
            let response = match tokio::time::timeout(Duration::from_secs(60), call).await {
                Ok(Ok(Ok(()))) => Response::Done {
                    message: format!("{name} started on {own}"),
                },
                Ok(Ok(Err(e))) => Response::Error { message: e },
                Ok(Err(e)) => Response::Error {
                    message: format!("libvirt call failed: {e}"),
                },
                Err(_) => Response::Error {
                    message: "libvirt did not answer within 60 s".into(),
                },
            };
            let ok = matches!(response, Response::Done { .. });
            events.record(
                Some(&name),
                "operator",
                format!(
                    "operator: hvctl vm start {name}: {}",
                    if ok { "done" } else { "failed" }
                ),
                json!({ "command": "hvctl vm start", "domain": name, "accepted": ok }),
            );
            let _ = reply.send(response);
        });
    }

    /// The hypervisor listed its domains (or could not).
    fn on_domains(&mut self, listed: Result<Vec<crate::hypervisor::DomainInfo>, String>) {
        match listed {
            Ok(list) => {
                if let Some(was) = self.hypervisor_problem.take() {
                    let me = self.member.own_name.clone();
                    self.member.events.record(
                        Some(&me),
                        "hypervisor_back",
                        format!("the hypervisor answers again (it was: {was})"),
                        json!({}),
                    );
                }
                let mut now: Vec<hvcluster_common::hostlink::DomainPresence> = list
                    .into_iter()
                    .filter(|d| d.state.may_run())
                    .map(|d| hvcluster_common::hostlink::DomainPresence {
                        name: d.name,
                        uuid: d.uuid,
                        state: format!("{:?}", d.state),
                    })
                    .collect();
                now.sort();
                if now != self.domains {
                    self.domains = now;
                    self.check_double_runs();
                    self.send_heartbeats();
                }
            }
            Err(why) => {
                if self.hypervisor_problem.as_ref() != Some(&why) {
                    let me = self.member.own_name.clone();
                    self.member.events.record(
                        Some(&me),
                        "hypervisor_unreachable",
                        format!("cannot list the domains: {why}"),
                        json!({ "why": why }),
                    );
                    self.hypervisor_problem = Some(why);
                }
            }
        }
    }

    /// The domain lists of this host and of every other live host (Up or Suspect).
    fn live_domains(&self) -> Vec<(NodeId, &[hvcluster_common::hostlink::DomainPresence])> {
        let live: Vec<NodeId> = self
            .membership
            .peers(self.now())
            .into_iter()
            .filter(|p| p.state.present())
            .map(|p| p.node)
            .collect();
        std::iter::once((self.member.me, self.domains.as_slice()))
            .chain(
                self.remote_domains
                    .iter()
                    .filter(|(h, _)| live.contains(h))
                    .map(|(h, d)| (*h, d.as_slice())),
            )
            .collect()
    }

    /// Reports, once, every domain that runs on two hosts or more at the same time (the
    /// hosts that count are this one and those Up or Suspect).
    fn check_double_runs(&mut self) {
        let mut by_uuid: std::collections::BTreeMap<String, (String, Vec<NodeId>)> =
            std::collections::BTreeMap::new();
        for (host, domains) in self.live_domains() {
            for d in domains {
                let entry = by_uuid
                    .entry(d.uuid.clone())
                    .or_insert_with(|| (d.name.clone(), Vec::new()));
                entry.1.push(host);
            }
        }
        let now: std::collections::BTreeSet<(String, Vec<NodeId>)> = by_uuid
            .iter()
            .filter(|(_, (_, hosts))| hosts.len() > 1)
            .map(|(uuid, (_, hosts))| {
                let mut hosts = hosts.clone();
                hosts.sort_unstable();
                (uuid.clone(), hosts)
            })
            .collect();
        for (uuid, hosts) in now.difference(&self.double_runs) {
            let name = by_uuid
                .get(uuid)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let names: Vec<String> = hosts.iter().map(|h| self.name(*h)).collect();
            self.member.counters.bump("domain_double_runs");
            self.member.events.record(
                Some(&name),
                "domain_double_run",
                format!(
                    "domain {name} ({uuid}) runs on {} at the same time: its disks may be corrupted",
                    names.join(" and ")
                ),
                json!({ "domain": name, "uuid": uuid, "hosts": names }),
            );
        }
        self.double_runs = now;
    }

    /// A linked guest asks for a silent partner to be killed.
    fn on_kill_request(&mut self, conn: u64, request: u64, cluster: String, node_id: NodeId) {
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

    /// Destroys a guest of this host for an order of host `from`.
    fn destroy(&mut self, from: NodeId, order: hvcluster_common::hostlink::KillOrder) {
        let tx = self.member.tx.clone();
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
            self.on_destroyed(from, id, false, detail);
            return;
        };
        let Some(template) = self.config.hypervisor.destroy_command.clone() else {
            if let Some(libvirt) = self.libvirt.clone() {
                return self.destroy_through_libvirt(libvirt, from, id, guest);
            }
            let detail = format!(
                "{} has neither [hypervisor] destroy_command nor uri: it cannot destroy {}",
                self.member.own_name, guest.node
            );
            self.on_destroyed(from, id, false, detail);
            return;
        };
        // What a guest registered is untrusted: each value goes into the command
        // single-quoted (and registration refuses names outside a safe alphabet).
        let command = template
            .replace(
                "{domain}",
                &shell_quote(guest.domain.as_deref().unwrap_or(&guest.node)),
            )
            .replace("{node}", &shell_quote(&guest.node))
            .replace("{cluster}", &shell_quote(&guest.cluster))
            .replace("{host}", &shell_quote(&self.member.own_name));
        let timeout = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms);
        let by = self.name(from);
        self.member.events.record(
            Some(&guest.node),
            "guest_destroying",
            format!("{}: destroying it for {by}: {command}", guest.node),
            json!({ "cluster": guest.cluster, "by": by, "command": command }),
        );
        self.member.spawn(async move {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(&command);
            let (ok, detail) = match crate::child::run_bounded(cmd, None, timeout).await {
                Ok(run) if run.exit == Some(0) => (true, format!("{} destroyed", guest.node)),
                Ok(run) if run.timed_out => (
                    false,
                    format!("destroy command timed out after {timeout:?}"),
                ),
                Ok(run) => (
                    false,
                    format!(
                        "destroy command failed ({}): {}",
                        run.exit.map_or_else(
                            || "killed by a signal".to_string(),
                            |c| format!("exit {c}")
                        ),
                        crate::child::last_line(&run.stderr_tail).unwrap_or("")
                    ),
                ),
                Err(e) => (false, format!("cannot run the destroy command: {e}")),
            };
            let _ = tx
                .send(Input::Destroyed {
                    from,
                    id,
                    ok,
                    detail,
                })
                .await;
        });
    }

    /// Destroys `guest`'s domain through libvirt, off the async threads.
    fn destroy_through_libvirt(
        &mut self,
        libvirt: std::sync::Arc<crate::hypervisor::Libvirt>,
        from: NodeId,
        id: u64,
        guest: Linked,
    ) {
        let tx = self.member.tx.clone();
        let domain = guest.domain.clone().unwrap_or_else(|| guest.node.clone());
        let timeout = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms);
        let by = self.name(from);
        self.member.events.record(
            Some(&guest.node),
            "guest_destroying",
            format!(
                "{}: destroying domain {domain} through libvirt for {by}",
                guest.node
            ),
            json!({ "cluster": guest.cluster, "by": by, "domain": domain }),
        );
        self.member.spawn(async move {
            let name = domain.clone();
            let call = tokio::task::spawn_blocking(move || libvirt.destroy(&name));
            let (ok, detail) = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(Ok(crate::hypervisor::Destroyed::Now))) => {
                    (true, format!("{} destroyed (domain {domain})", guest.node))
                }
                Ok(Ok(Ok(crate::hypervisor::Destroyed::WasNotRunning))) => (
                    false,
                    format!("domain {domain} is not running on this host: nothing proved"),
                ),
                Ok(Ok(Err(e))) => (false, e),
                Ok(Err(e)) => (false, format!("libvirt call failed: {e}")),
                Err(_) => (false, format!("libvirt did not answer within {timeout:?}")),
            };
            let _ = tx
                .send(Input::Destroyed {
                    from,
                    id,
                    ok,
                    detail,
                })
                .await;
        });
    }

    /// A destroy command ended.
    fn on_destroyed(&mut self, from: NodeId, id: u64, ok: bool, detail: String) {
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
    fn kill_result(&mut self, given: &kills::Given, ok: bool, detail: String) {
        self.send_kill_result(given.conn, given.request, ok, detail, 0);
    }

    /// Sends a kill result to the guest on `conn`, if it is still linked.
    fn send_kill_result(
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
    fn expire_kills(&mut self) {
        let limit = Duration::from_millis(self.config.hypervisor.destroy_timeout_ms)
            + Duration::from_secs(10);
        for given in self.kills.expired(self.now(), limit) {
            let host = self.name(given.order.target_host);
            self.kill_result(&given, false, format!("no answer from {host}"));
        }
    }

    /// Sends the host-down notices that are due to linked guests.
    fn send_notices(&mut self) {
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

    fn report(&mut self, e: MembershipEvent) {
        let detail = serde_json::to_value(&e).unwrap_or_default();
        let (subject, kind, message) = crate::describe::membership_event(
            &e,
            |n| self.name(n),
            |i| {
                self.config
                    .interconnects
                    .get(i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default()
            },
            &self.member.own_name,
        );
        self.member
            .events
            .record(subject.as_deref(), kind, message, detail);
    }
}

/// Listens for host links on this host's `link_address`, when it has one, with the keys
/// of the configured guest clusters.
fn start_host_link(
    config: &ClusterConfig,
    member: &mut Member<Input, Heartbeat>,
    host: &str,
    incarnation: u64,
) -> anyhow::Result<()> {
    let Some(address) = config.host(host).and_then(|h| h.link_address) else {
        return Ok(());
    };
    let addr = SocketAddr::new(address, config.host_link.port);
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
    let std_listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for host links on {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let me = crate::link::ServerIdentity {
        host: host.to_string(),
        node_id: member.me,
        incarnation,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    member.spawn(crate::link::serve(
        listener,
        std::sync::Arc::new(keys),
        me,
        tx,
    ));
    let inputs = member.tx.clone();
    member.spawn(async move {
        while let Some(input) = rx.recv().await {
            if inputs.send(Input::Link(input)).await.is_err() {
                return;
            }
        }
    });
    tracing::info!(%addr, guest_clusters = config.guest_clusters.len(), "listening for host links");
    Ok(())
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Lists the hypervisor's domains every second, off the async threads.
async fn poll_domains(
    libvirt: std::sync::Arc<crate::hypervisor::Libvirt>,
    tx: tokio::sync::mpsc::Sender<Input>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hv = libvirt.clone();
        let call = tokio::task::spawn_blocking(move || hv.list());
        let listed = match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => Err(format!("libvirt call failed: {e}")),
            Err(_) => Err("libvirt did not answer within 10 s".into()),
        };
        if tx.send(Input::Domains(listed)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod quote_tests {
    /// Whatever a guest registers, it stays one word of the destroy command.
    #[test]
    fn registered_values_stay_one_shell_word() {
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
