//! The agent's driver loop: owns the membership machine, feeds it what arrives and
//! performs what it returns.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hvcluster_common::admin::{HostStatus, Request, Response};
use hvcluster_common::config::{ClusterConfig, LoadedConfig, NodeId};
use hvcluster_common::kdump;
use hvcluster_common::membership::{
    Action, Heartbeat, Membership, MembershipConfig, MembershipEvent, WatchdogVerdict,
};
use hvcluster_common::wire::{self, Header, Kind, ReplayError, ReplayWindow, WireError};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

mod status;

use crate::counters::Counters;
use crate::events::EventLog;
use crate::fence::FenceDriver;
use crate::process::Prepared;
use crate::{admin, incarnation, net, operator, watchdog};

/// What the driver loop receives from its tasks.
#[derive(Debug)]
pub enum Input {
    /// A datagram on a heartbeat socket.
    Frame {
        /// Interconnect index.
        ic: usize,
        /// Source address.
        from: SocketAddr,
        /// When it was received.
        at: Instant,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A datagram on the kdump port.
    Kdump {
        /// Source address.
        from: SocketAddr,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The load watchdog changed its verdict.
    Watchdog(WatchdogVerdict),
    /// An admin client wants the status.
    Status(oneshot::Sender<HostStatus>),
    /// An operator command from the admin socket ([`crate::operator`]).
    Operator {
        /// The command.
        request: Request,
        /// Where its answer goes.
        reply: oneshot::Sender<Response>,
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

struct PeerRoute {
    id: NodeId,
    addrs: Vec<SocketAddr>,
}

/// A running host agent.
pub struct Agent {
    config: ClusterConfig,
    key: Vec<u8>,
    cluster_id: u64,
    me: NodeId,
    host: String,
    names: HashMap<NodeId, String>,
    membership: Membership,
    fence: FenceDriver,
    origin: Instant,
    sockets: Vec<Arc<UdpSocket>>,
    routes: Vec<PeerRoute>,
    kdump_sources: HashMap<IpAddr, NodeId>,
    /// Next sequence number per receiving peer, so a frame sent to one peer cannot be
    /// replayed to another inside its window.
    sequences: HashMap<NodeId, u64>,
    windows: HashMap<NodeId, ReplayWindow>,
    counters: Counters,
    events: EventLog,
    started_unix_ms: u64,
    prepared: Prepared,
    rx: mpsc::Receiver<Input>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("host", &self.host)
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
        let me_entry = config
            .host(host)
            .context("host not in configuration")?
            .clone();
        let me = me_entry.node_id;
        let (tx, rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();

        let mut sockets = Vec::new();
        for (ic, icfg) in config.interconnects.iter().enumerate() {
            let addr = SocketAddr::new(me_entry.addresses[&icfg.name], icfg.port);
            let socket = net::bind_udp(addr, &format!("heartbeat ({})", icfg.name))?;
            tasks.push(tokio::spawn(net::receive_frames(
                socket.clone(),
                ic,
                tx.clone(),
            )));
            sockets.push(socket);
        }
        if config.kdump.enabled {
            let addr = SocketAddr::new(config.kdump.listen, config.kdump.port);
            let socket = net::bind_udp(addr, "kdump notice")?;
            tasks.push(tokio::spawn(crate::kdump::listen(socket, tx.clone())));
        }
        let routes = config
            .hosts
            .iter()
            .filter(|h| h.node_id != me)
            .map(|h| PeerRoute {
                id: h.node_id,
                addrs: config
                    .interconnects
                    .iter()
                    .map(|ic| SocketAddr::new(h.addresses[&ic.name], ic.port))
                    .collect(),
            })
            .collect();
        let kdump_sources = config
            .hosts
            .iter()
            .flat_map(|h| net::host_addresses(h).map(move |a| (a, h.node_id)))
            .collect();
        let names = config
            .hosts
            .iter()
            .map(|h| (h.node_id, h.name.clone()))
            .collect();

        let events = EventLog::new(host);
        let listener = admin::bind(&config.admin.socket)?;
        tasks.push(tokio::spawn(admin::serve(
            listener,
            admin::HostDispatch(tx.clone()),
            events.clone(),
        )));
        watchdog::spawn((&config.load_watchdog).into(), tx.clone())
            .context("cannot start the load watchdog")?;

        let incarnation = incarnation::next(&config.cluster.state_dir);
        let (fence, restored) = FenceDriver::open(&config, me, tx.clone()).with_context(|| {
            format!(
                "cannot open the fencing journal in {}",
                config.cluster.state_dir.display()
            )
        })?;
        let origin = Instant::now();
        let membership = Membership::new(
            MembershipConfig::from_cluster(&config, me, digest),
            incarnation,
            Duration::ZERO,
        );
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
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
            cluster_id: config.cluster_id(),
            config,
            key,
            me,
            host: host.to_string(),
            names,
            membership,
            fence,
            origin,
            sockets,
            routes,
            kdump_sources,
            sequences: HashMap::new(),
            windows: HashMap::new(),
            counters: Counters::default(),
            events,
            started_unix_ms,
            prepared,
            rx,
            tasks,
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
                Some(input) = self.rx.recv() => self.on_input(input),
                _ = ticker.tick() => {
                    let actions = self.membership.tick(self.now());
                    self.perform(actions);
                    let now = self.now();
                    let view = FenceDriver::view(&self.membership, now);
                    let events = self.fence.tick(now, &view);
                    self.report_fence(events);
                }
            }
        }
        self.events.record(
            Some(&self.host.clone()),
            "stopped",
            "agent stopping".into(),
            json!({}),
        );
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.config.admin.socket);
        Ok(())
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn name(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node{id}"))
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Frame {
                ic,
                from,
                at,
                bytes,
            } => self.on_frame(ic, from, at, &bytes),
            Input::Kdump { from, bytes } => self.on_kdump(from, &bytes),
            Input::Watchdog(verdict) => {
                let before = self.membership.watchdog();
                self.membership.set_watchdog(verdict);
                if std::mem::discriminant(&before) != std::mem::discriminant(&verdict) {
                    self.events.record(
                        Some(&self.host.clone()),
                        "watchdog",
                        format!("load watchdog: {}", crate::describe::verdict_text(verdict)),
                        serde_json::to_value(verdict).unwrap_or_default(),
                    );
                }
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::Operator { request, reply } => {
                let cx = operator::Ctx {
                    now: self.now(),
                    config: &self.config,
                    me: self.me,
                    membership: &self.membership,
                    fence: &mut self.fence,
                    events: &self.events,
                };
                let (events, answer) = operator::handle(cx, request, reply);
                self.report_fence(events);
                answer.send();
            }
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

    fn drop_frame(&mut self, reason: &str, from: SocketAddr) {
        let counter = format!("frames_dropped_{reason}");
        if let Some(since) = self.counters.bump_logged(&counter, Instant::now()) {
            self.events.record(
                None,
                "frame_dropped",
                format!(
                    "dropped {since} frame(s) ({reason}) since last report; latest from {from}"
                ),
                json!({ "reason": reason, "from": from.to_string(), "count_since_last": since }),
            );
        }
    }

    fn on_frame(&mut self, ic: usize, from: SocketAddr, at: Instant, bytes: &[u8]) {
        self.counters.bump("frames_received");
        let frame = match wire::decode(bytes, &self.key, self.cluster_id) {
            Ok(f) => f,
            Err(e) => {
                let reason = match e {
                    WireError::BadTag => "bad_tag",
                    WireError::ForeignCluster => "foreign_cluster",
                    WireError::Version(_) => "version",
                    WireError::UnknownKind(_) => "unknown_kind",
                    WireError::Malformed | WireError::BadMagic | WireError::TooLarge => "malformed",
                };
                return self.drop_frame(reason, from);
            }
        };
        let sender = frame.header.sender;
        if sender == self.me || !self.names.contains_key(&sender) {
            return self.drop_frame("unknown_sender", from);
        }
        let accepted = match self
            .windows
            .entry(sender)
            .or_default()
            .accept(frame.header.incarnation, frame.header.sequence)
        {
            Ok(a) => a,
            Err(ReplayError::Replayed) => return self.drop_frame("replayed", from),
            Err(ReplayError::OldIncarnation) => return self.drop_frame("old_incarnation", from),
        };
        match frame.header.kind {
            Kind::Heartbeat => {
                let Ok(hb) = postcard::from_bytes::<Heartbeat>(frame.payload) else {
                    return self.drop_frame("bad_payload", from);
                };
                if hb.interconnect as usize != ic {
                    return self.drop_frame("wrong_interconnect", from);
                }
                self.counters.bump("heartbeats_accepted");
                let now = at.saturating_duration_since(self.origin);
                let actions = self.membership.on_heartbeat(
                    now,
                    sender,
                    frame.header.incarnation,
                    accepted,
                    &hb,
                );
                self.perform(actions);
                if !hb.down.is_empty() {
                    let events = self.fence.on_peer_downs(&hb.down, &self.membership, now);
                    self.report_fence(events);
                }
            }
            Kind::GuestHeartbeat => self.drop_frame("unknown_kind", from),
        }
    }

    fn on_kdump(&mut self, from: SocketAddr, bytes: &[u8]) {
        if let Err(e) = kdump::parse_notice(bytes) {
            if self
                .counters
                .bump_logged("kdump_malformed", Instant::now())
                .is_some()
            {
                tracing::warn!(from = %from, cause = %e, "malformed datagram on the kdump port");
            }
            return;
        }
        let Some(&node) = self.kdump_sources.get(&from.ip()) else {
            if let Some(since) = self.counters.bump_logged("kdump_refused", Instant::now()) {
                self.events.record(
                    None,
                    "kdump_refused",
                    format!(
                        "ignored {since} panic notice(s) from {} which is no host's address",
                        from.ip()
                    ),
                    json!({ "from": from.to_string(), "count_since_last": since }),
                );
            }
            return;
        };
        if node == self.me {
            self.counters.bump("kdump_own");
            return;
        }
        self.counters.bump("kdump_accepted");
        let name = self.name(node);
        let first = !self
            .membership
            .peers(self.now())
            .iter()
            .any(|p| p.node == node && p.panic_noticed);
        if first {
            self.events.record(
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
                    let inc = incarnation::next(&self.config.cluster.state_dir);
                    self.sequences.clear();
                    let host = self.host.clone();
                    self.events.record(
                        Some(&host),
                        "rejoined",
                        format!("rejoining the cluster with incarnation {inc}"),
                        json!({ "incarnation": inc }),
                    );
                    let more = self.membership.rejoin(self.now(), inc);
                    self.perform(more);
                }
            }
        }
    }

    fn send_heartbeats(&mut self) {
        for ic in 0..self.sockets.len() {
            let mut hb = self.membership.heartbeat(ic);
            hb.down = self.fence.down_records();
            let Ok(payload) = postcard::to_allocvec(&hb) else {
                continue;
            };
            for r in 0..self.routes.len() {
                let sequence = self.sequences.entry(self.routes[r].id).or_insert(0);
                *sequence += 1;
                let header = Header {
                    kind: Kind::Heartbeat,
                    cluster_id: self.cluster_id,
                    sender: self.me,
                    incarnation: self.membership.incarnation(),
                    sequence: *sequence,
                };
                let Ok(frame) = wire::encode(&header, &payload, &self.key) else {
                    continue;
                };
                let to = self.routes[r].addrs[ic];
                if let Err(e) = self.sockets[ic].try_send_to(&frame, to) {
                    let name = format!("send_errors_{}", self.config.interconnects[ic].name);
                    if self.counters.bump_logged(&name, Instant::now()).is_some() {
                        tracing::warn!(to = %to, peer = %self.name(self.routes[r].id), cause = %e, "cannot send heartbeat");
                    }
                } else {
                    self.counters.bump("heartbeats_sent");
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
            self.events.record(
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
            &self.host,
        );
        self.events
            .record(subject.as_deref(), kind, message, detail);
    }
}
