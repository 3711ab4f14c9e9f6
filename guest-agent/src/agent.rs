//! The guest agent's driver loop: owns the membership machine, the guest node states
//! and the application engine, feeds them what arrives and performs what they return.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hvcluster_common::admin::{GuestStatus, Request, Response};
use hvcluster_common::application::{
    AppAction, AppSpec, Command, DownProof, Engine, GuestHeartbeat, GuestNodes, NodeChange,
    OpOutcome,
};
use hvcluster_common::config::guest::{GuestConfig, LoadedGuestConfig};
use hvcluster_common::config::NodeId;
use hvcluster_common::membership::{Action, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::{self, Header, Kind, ReplayError, ReplayWindow, WireError};
use hvcluster_host_agent::admin::{self, Dispatch};
use hvcluster_host_agent::counters::Counters;
use hvcluster_host_agent::events::EventLog;
use hvcluster_host_agent::{incarnation, net};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::describe;
use crate::resources::{self, OpRequest};
use crate::state;
use hvcluster_common::application::outcome::OpKind;

/// How often the loop ticks the cores.
const TICK: Duration = Duration::from_millis(20);
/// Longest wait for the applications to stop at shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(900);

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
    /// An admin client wants the status.
    Status(oneshot::Sender<GuestStatus>),
    /// An operator command.
    Operator {
        /// The command.
        request: Request,
        /// Where its answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// A resource operation ended.
    OpDone {
        /// Operation id.
        id: u64,
        /// How it ended.
        outcome: OpOutcome,
    },
}

#[derive(Debug, Clone)]
struct GuestDispatch(mpsc::Sender<Input>);

impl Dispatch for GuestDispatch {
    async fn dispatch(&self, request: Request) -> Response {
        match request {
            Request::Status => admin::ask(&self.0, Input::Status)
                .await
                .map_or_else(admin::stopping, |s| Response::GuestStatus(Box::new(s))),
            request if request.is_guest_command() => {
                admin::ask(&self.0, |reply| Input::Operator { request, reply })
                    .await
                    .unwrap_or_else(admin::stopping)
            }
            _ => Response::Refused {
                message: "this is a guest agent: fencing and host commands go to the host \
                          agent of a hypervisor (hvctl on the host)"
                    .into(),
            },
        }
    }
}

struct PeerRoute {
    id: NodeId,
    addrs: Vec<SocketAddr>,
}

/// A running guest agent.
pub struct Agent {
    config: GuestConfig,
    key: Vec<u8>,
    cluster_id: u64,
    me: NodeId,
    node: String,
    names: HashMap<NodeId, String>,
    membership: Membership,
    nodes: GuestNodes,
    engine: Engine,
    origin: Instant,
    sockets: Vec<Arc<UdpSocket>>,
    routes: Vec<PeerRoute>,
    sequences: HashMap<NodeId, u64>,
    windows: HashMap<NodeId, ReplayWindow>,
    counters: Counters,
    events: EventLog,
    started_unix_ms: u64,
    state_file: PathBuf,
    announce: bool,
    declared_dead: bool,
    tx: mpsc::Sender<Input>,
    rx: mpsc::Receiver<Input>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Binds every socket and starts the receiving tasks and the admin server.
    pub async fn start(loaded: LoadedGuestConfig, node: &str) -> anyhow::Result<Agent> {
        let LoadedGuestConfig {
            config,
            key,
            digest,
        } = loaded;
        let me_entry = config
            .node(node)
            .context("node not in configuration")?
            .clone();
        let me = me_entry.node_id;
        let (tx, rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        let mut sockets = Vec::new();
        for (ic, icfg) in config.interconnects.iter().enumerate() {
            let addr = SocketAddr::new(me_entry.addresses[&icfg.name], icfg.port);
            let socket = net::bind_udp(addr, &format!("guest heartbeat ({})", icfg.name))?;
            tasks.push(tokio::spawn(receive(socket.clone(), ic, tx.clone())));
            sockets.push(socket);
        }
        let routes = config
            .nodes
            .iter()
            .filter(|n| n.node_id != me)
            .map(|n| PeerRoute {
                id: n.node_id,
                addrs: config
                    .interconnects
                    .iter()
                    .map(|ic| SocketAddr::new(n.addresses[&ic.name], ic.port))
                    .collect(),
            })
            .collect();
        let names = config
            .nodes
            .iter()
            .map(|n| (n.node_id, n.name.clone()))
            .collect();
        let events = EventLog::new(node);
        let listener = admin::bind(&config.admin.socket)?;
        tasks.push(tokio::spawn(admin::serve(
            listener,
            GuestDispatch(tx.clone()),
            events.clone(),
        )));
        let state_dir = config.cluster.state_dir.clone();
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        let incarnation = incarnation::next(&state_dir);
        let state_file = state::path(&state_dir);
        let (persistent, problem) = state::load(&state_file);
        if let Some(problem) = problem {
            events.record(Some(node), "state_unreadable", problem, json!({}));
        }
        let ids: Vec<NodeId> = config.nodes.iter().map(|n| n.node_id).collect();
        let membership = Membership::new(
            membership_config(&config, me, digest),
            incarnation,
            Duration::ZERO,
        );
        let nodes = GuestNodes::new(
            me,
            &ids,
            Duration::from_millis(config.heartbeat.dead_after_ms),
        );
        let mut engine = Engine::new(
            me,
            AppSpec::from_config(&config),
            &persistent,
            Duration::ZERO,
        );
        engine.set_names(
            config
                .nodes
                .iter()
                .map(|n| (n.node_id, n.name.clone()))
                .collect(),
        );
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        events.record(
            Some(node),
            "agent_started",
            format!(
                "{node}: guest agent started (guest cluster {}, incarnation {incarnation}, {} application(s))",
                config.cluster.name,
                config.applications.len()
            ),
            json!({ "incarnation": incarnation }),
        );
        Ok(Agent {
            cluster_id: config.cluster_id(),
            config,
            key,
            me,
            node: node.to_string(),
            names,
            membership,
            nodes,
            engine,
            origin: Instant::now(),
            sockets,
            routes,
            sequences: HashMap::new(),
            windows: HashMap::new(),
            counters: Counters::default(),
            events,
            started_unix_ms,
            state_file,
            announce: false,
            declared_dead: false,
            tx,
            rx,
            tasks,
        })
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn name(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node {id}"))
    }

    /// Runs until `shutdown` resolves, then stops the applications running here and
    /// returns once they are stopped.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut leaving: Option<Instant> = None;
        loop {
            tokio::select! {
                Some(input) = self.rx.recv() => self.on_input(input),
                _ = ticker.tick() => {
                    self.tick();
                    if let Some(since) = leaving {
                        if self.engine.all_inactive() || since.elapsed() > SHUTDOWN_LIMIT {
                            break;
                        }
                    }
                }
                _ = &mut shutdown, if leaving.is_none() => {
                    leaving = Some(Instant::now());
                    let node = self.node.clone();
                    self.events.record(Some(&node), "agent_stopping", format!("{node}: shutting down: stopping the applications running here (reason SHUT)"), json!({}));
                    let actions = self.engine.shutdown(self.now());
                    self.perform_apps(actions);
                }
            }
            self.flush_announce();
        }
        // Tell the peers once more that nothing runs here any more.
        self.send_heartbeats();
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.config.admin.socket);
        tracing::info!("guest agent stopped");
        Ok(())
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Frame {
                ic,
                from,
                at,
                bytes,
            } => self.on_frame(ic, from, at, &bytes),
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::Operator { request, reply } => {
                let response = self.operator(request);
                let _ = reply.send(response);
            }
            Input::OpDone { id, outcome } => {
                let actions = self.engine.on_result(self.now(), id, outcome);
                self.perform_apps(actions);
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        let actions = self.membership.tick(now);
        self.perform(actions);
        self.update_nodes();
        let actions = self.engine.tick(now);
        self.perform_apps(actions);
    }

    fn flush_announce(&mut self) {
        if std::mem::take(&mut self.announce) {
            self.send_heartbeats();
        }
    }

    fn update_nodes(&mut self) {
        let changes = self.nodes.update(&self.membership.peers(self.now()));
        self.after_node_changes(changes);
    }

    fn after_node_changes(&mut self, changes: Vec<NodeChange>) {
        for c in &changes {
            let name = self.name(c.node);
            self.events.record(
                Some(&name),
                "node_state",
                format!("{name}: {} -> {}", c.from, c.to),
                json!({ "from": c.from, "to": c.to }),
            );
        }
        if !changes.is_empty() {
            let actions = self.engine.set_nodes(self.now(), self.nodes.views());
            self.perform_apps(actions);
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
        if frame.header.kind != Kind::GuestHeartbeat {
            return self.drop_frame("unknown_kind", from);
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
        let Ok(hb) = postcard::from_bytes::<GuestHeartbeat>(frame.payload) else {
            return self.drop_frame("bad_payload", from);
        };
        if hb.membership.interconnect as usize != ic {
            return self.drop_frame("wrong_interconnect", from);
        }
        self.counters.bump("heartbeats_accepted");
        let now = at.saturating_duration_since(self.origin);
        let incarnation = frame.header.incarnation;
        let actions =
            self.membership
                .on_heartbeat(now, sender, incarnation, accepted, &hb.membership);
        self.perform(actions);
        self.update_nodes();
        let actions = self.engine.on_gossip(now, sender, incarnation, &hb.gossip);
        self.perform_apps(actions);
        for proof in hb.proofs {
            self.on_proof(sender, proof);
        }
    }

    fn on_proof(&mut self, from: NodeId, proof: DownProof) {
        if proof.node == self.me {
            if proof.incarnation == self.membership.incarnation() && !self.declared_dead {
                // The others hold this node dead and may take over its applications:
                // nothing may run here any more.
                self.declared_dead = true;
                let by = self.name(from);
                let node = self.node.clone();
                self.events.record(
                    Some(&node),
                    "declared_down",
                    format!("{node}: {by} holds this node DOWN: stopping every application here; restart hv-guestd to rejoin"),
                    json!({ "by": by }),
                );
                let actions = self.engine.abandon(self.now());
                self.perform_apps(actions);
            }
            return;
        }
        if let Some(change) = self.nodes.prove_down(proof) {
            self.after_node_changes(vec![change]);
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendHeartbeats => self.send_heartbeats(),
                Action::Event(e) => {
                    if let Some((subject, kind, message)) =
                        describe::membership_event(&e, |n| self.name(n))
                    {
                        self.events.record(
                            subject.as_deref(),
                            kind,
                            message,
                            serde_json::to_value(&e).unwrap_or_default(),
                        );
                    }
                }
                Action::Rejoin => {
                    let inc = incarnation::next(&self.config.cluster.state_dir);
                    self.sequences.clear();
                    let node = self.node.clone();
                    self.events.record(
                        Some(&node),
                        "rejoin",
                        format!("{node}: rejoining the guest cluster with incarnation {inc}"),
                        json!({ "incarnation": inc }),
                    );
                    let actions = self.membership.rejoin(self.now(), inc);
                    self.perform(actions);
                }
            }
        }
    }

    fn perform_apps(&mut self, actions: Vec<AppAction>) {
        for action in actions {
            match action {
                AppAction::Run(op) => {
                    let Some(app) = self.config.applications.get(op.app) else {
                        continue;
                    };
                    let Some(resource) = app.resources.get(op.resource) else {
                        continue;
                    };
                    self.counters.bump("resource_ops");
                    if op.kind == OpKind::Check {
                        tracing::debug!(app = %app.name, resource = %resource.name, "resource check");
                    } else {
                        tracing::info!(app = %app.name, resource = %resource.name, op = ?op.kind, reason = ?op.reason, "resource operation");
                    }
                    let request = OpRequest {
                        app: app.name.clone(),
                        node: self.node.clone(),
                        resource: resource.clone(),
                        kind: op.kind,
                        reason: op.reason,
                        auto_recover: op.auto_recover,
                        forced: false,
                    };
                    let tx = self.tx.clone();
                    let id = op.id;
                    tokio::spawn(async move {
                        let outcome = resources::run(request).await;
                        let _ = tx.send(Input::OpDone { id, outcome }).await;
                    });
                }
                AppAction::Event(e) => {
                    let (subject, kind, message) = describe::app_event(&e, |n| self.name(n));
                    self.events.record(
                        Some(&subject),
                        kind,
                        message,
                        serde_json::to_value(&e).unwrap_or_default(),
                    );
                }
                AppAction::Persist => {
                    if let Err(e) = state::save(&self.state_file, &self.engine.persistent()) {
                        let node = self.node.clone();
                        self.events.record(
                            Some(&node),
                            "state_not_saved",
                            format!("cannot save the application state: {e:#}"),
                            json!({}),
                        );
                    }
                }
                AppAction::Announce => self.announce = true,
                AppAction::KillNode(n) => {
                    let name = self.name(n);
                    self.events.record(
                        Some(&name),
                        "kill_requested",
                        format!(
                            "{name} must be killed (HaltFlag: its stop failed); there is no host \
                             link to do it: make sure {name} is off, then run hvctl node down {name}"
                        ),
                        json!({ "node": name }),
                    );
                }
            }
        }
    }

    fn send_heartbeats(&mut self) {
        let gossip = self.engine.gossip();
        let proofs = self.nodes.proofs();
        for ic in 0..self.sockets.len() {
            let hb = GuestHeartbeat {
                membership: self.membership.heartbeat(ic),
                gossip: gossip.clone(),
                proofs: proofs.clone(),
            };
            let Ok(payload) = postcard::to_allocvec(&hb) else {
                continue;
            };
            for r in 0..self.routes.len() {
                let sequence = self.sequences.entry(self.routes[r].id).or_insert(0);
                *sequence += 1;
                let header = Header {
                    kind: Kind::GuestHeartbeat,
                    cluster_id: self.cluster_id,
                    sender: self.me,
                    incarnation: self.membership.incarnation(),
                    sequence: *sequence,
                };
                let Ok(frame) = wire::encode(&header, &payload, &self.key) else {
                    continue;
                };
                let to = self.routes[r].addrs[ic];
                if self.sockets[ic].try_send_to(&frame, to).is_err() {
                    self.counters.bump("send_errors");
                }
            }
        }
    }

    fn operator(&mut self, request: Request) -> Response {
        let now = self.now();
        let (what, result) = match &request {
            Request::NodeDown { node } => (format!("node down {node}"), self.node_down(node)),
            Request::AppSwitch { app, node } => {
                let target = match node {
                    Some(n) => match self.config.node(n) {
                        Some(e) => Some(e.node_id),
                        None => {
                            return Response::Refused {
                                message: format!(
                                    "there is no node {n:?} in {}",
                                    self.config.cluster.name
                                ),
                            }
                        }
                    },
                    None => None,
                };
                (
                    format!("app switch {app}"),
                    self.command(now, app, Command::Switch(target)),
                )
            }
            Request::AppOnline { app } => (
                format!("app online {app}"),
                self.command(now, app, Command::Online),
            ),
            Request::AppOffline { app } => (
                format!("app offline {app}"),
                self.command(now, app, Command::Offline),
            ),
            Request::AppClear { app } => (
                format!("app clear {app}"),
                self.command(now, app, Command::Clear),
            ),
            Request::AppMaintenance { app, on } => (
                format!("app maintenance {app} {}", if *on { "on" } else { "off" }),
                self.command(now, app, Command::Maintenance(*on)),
            ),
            _ => (
                "?".to_string(),
                Err("not a guest operator command".to_string()),
            ),
        };
        let node = self.node.clone();
        let accepted = result.is_ok();
        let verdict = match &result {
            Ok(m) => format!("done: {m}"),
            Err(m) => format!("refused: {m}"),
        };
        self.events.record(
            Some(&node),
            "operator",
            format!("operator: hvctl {what}: {verdict}"),
            json!({ "command": what, "accepted": accepted }),
        );
        self.flush_announce();
        match result {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Refused { message },
        }
    }

    fn command(&mut self, now: Duration, app: &str, command: Command) -> Result<String, String> {
        let (message, actions) = self.engine.command(now, app, command)?;
        self.perform_apps(actions);
        Ok(message)
    }

    fn node_down(&mut self, node: &str) -> Result<String, String> {
        let Some(entry) = self.config.node(node) else {
            return Err(format!(
                "there is no node {node:?} in {}",
                self.config.cluster.name
            ));
        };
        let id = entry.node_id;
        if id == self.me {
            return Err("this is the node you are on: it is not down".into());
        }
        let peer = self
            .membership
            .peers(self.now())
            .into_iter()
            .find(|p| p.node == id);
        if let Some(why) = self.nodes.refuse_down(id, peer.as_ref()) {
            return Err(format!("{node} cannot be marked down: {why}"));
        }
        let incarnation = peer.and_then(|p| p.incarnation).unwrap_or(0);
        let change = self.nodes.prove_down(DownProof {
            node: id,
            incarnation,
        });
        if let Some(change) = change {
            self.after_node_changes(vec![change]);
        }
        self.announce = true;
        Ok(format!(
            "{node} is DOWN (operator's word): its applications may now switch"
        ))
    }

    fn status(&self) -> GuestStatus {
        describe::status(self)
    }
}

/// Membership timings and identity for a guest node.
fn membership_config(config: &GuestConfig, me: NodeId, digest: [u8; 16]) -> MembershipConfig {
    let two_node = config.nodes.len() == 2;
    MembershipConfig {
        me,
        hosts: config
            .nodes
            .iter()
            .map(|n| (n.node_id, n.name.clone(), 1))
            .collect(),
        interconnects: config.interconnects.len(),
        interval: Duration::from_millis(config.heartbeat.interval_ms),
        suspect_after: Duration::from_millis(config.heartbeat.suspect_after_ms),
        dead_after: Duration::from_millis(config.heartbeat.dead_after_ms),
        hung_limit: Duration::from_millis(config.heartbeat.dead_after_ms),
        rejoin_heartbeats: config.heartbeat.rejoin_heartbeats,
        quorum: QuorumRules {
            total_votes: config.nodes.len() as u32,
            two_node,
            wait_for_all: two_node,
        },
        digest,
    }
}

/// Receives datagrams on `socket` for interconnect `ic`.
async fn receive(socket: Arc<UdpSocket>, ic: usize, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let input = Input::Frame {
                    ic,
                    from,
                    at: Instant::now(),
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(interconnect = ic, cause = %e, "receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accessors for [`describe::status`].
impl Agent {
    pub(crate) fn parts(
        &self,
    ) -> (
        &GuestConfig,
        NodeId,
        &str,
        &Membership,
        &GuestNodes,
        &Engine,
        &Counters,
        u64,
        Duration,
    ) {
        (
            &self.config,
            self.me,
            &self.node,
            &self.membership,
            &self.nodes,
            &self.engine,
            &self.counters,
            self.started_unix_ms,
            self.now(),
        )
    }
}
