//! The guest agent's driver loop: owns the membership machine, the guest node states
//! and the application engine, feeds them what arrives and performs what they return.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::admin::{GuestNodeState, GuestStatus, Request, Response};
use hvcluster_common::application::{
    AppAction, Command, DownProof, Engine, GuestHeartbeat, GuestNodes, NodeChange, OpOutcome,
};
use hvcluster_common::config::guest::{GuestConfig, LoadedGuestConfig};
use hvcluster_common::config::NodeId;
use hvcluster_common::membership::{Action, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_runtime::admin::{self, AdminCall, Dispatch};
use hvcluster_runtime::counters::Counters;
use hvcluster_runtime::incarnation;
use hvcluster_runtime::member::Member;
use hvcluster_runtime::net::{Received, Roster};
use serde_json::json;
use tokio::sync::mpsc;

mod linked;
mod migration;

use linked::{start_host_link, KILL_STAGGER};

use crate::describe;
use hvcluster_runtime::apps::Apps;

/// How often the loop ticks the cores.
const TICK: Duration = Duration::from_millis(20);

/// What the driver loop receives from its tasks.
#[derive(Debug)]
pub enum Input {
    /// An admin client wants the status, or gives an operator command.
    Admin(AdminCall<GuestStatus>),
    /// Something happened on the host link.
    Link(crate::link::LinkEvent),
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
            request if matches!(request, Request::Status) || request.is_guest_command() => {
                let status = |s| Response::GuestStatus(Box::new(s));
                admin::forward(&self.0, request, Input::Admin, status).await
            }
            _ => Response::Refused {
                message: "this is a guest agent: fencing and host commands go to the host \
                          agent of a hypervisor (hvctl on the host)"
                    .into(),
            },
        }
    }
}

/// A running guest agent.
pub struct Agent {
    config: GuestConfig,
    member: Member<Input, GuestHeartbeat>,
    membership: Membership,
    nodes: GuestNodes,
    apps: Apps,
    declared_dead: bool,
    /// Sends messages to the host agent, when the host link is configured.
    link: Option<mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>,
    /// Tells the host link this agent's incarnation (it registers again when it changes).
    link_incarnation: tokio::sync::watch::Sender<u64>,
    /// The host this guest is linked to, while linked.
    linked_to: Option<String>,
    /// Kill requests to make once due: node, when, and whether HaltFlag asks (the
    /// node may still be heard) rather than its silence.
    kills_due: Vec<(NodeId, Instant, bool)>,
    /// Kill requests sent: request id → node and the incarnation it had.
    kills_sent: std::collections::BTreeMap<u64, (NodeId, u64)>,
    next_kill: u64,
    /// Nodes whose kill request was reported (once per silence, not at every retry).
    kills_reported: std::collections::BTreeSet<NodeId>,
    /// Migrations of this guest and its partners.
    migrations: migration::Migrations,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.member.own_name)
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
        let members = config
            .nodes
            .iter()
            .map(|n| (n.node_id, n.name.as_str(), &n.addresses));
        let link_key = key.clone();
        let roster = Roster::new(
            key,
            config.cluster_id(),
            node,
            &config.interconnects,
            members,
        )?;
        let mut member = Member::start(roster, "guest heartbeat")?;
        let me = member.me;
        let dispatch = GuestDispatch(member.tx.clone());
        let state_dir = &config.cluster.state_dir;
        member.serve_admin(&config.admin.socket, state_dir, dispatch.clone())?;
        if let Some(port) = &config.admin.port {
            member.serve_admin_port(port, state_dir, dispatch);
        }
        let state_dir = config.cluster.state_dir.clone();
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        let incarnation = incarnation::next(&state_dir);
        let ids: Vec<NodeId> = config.nodes.iter().map(|n| n.node_id).collect();
        let membership = Membership::new(
            membership_config(&config, me, digest),
            incarnation,
            member.now(),
        );
        let nodes = GuestNodes::new(
            me,
            &ids,
            Duration::from_millis(config.heartbeat.dead_after_ms),
        );
        let names = config
            .nodes
            .iter()
            .map(|n| (n.node_id, n.name.clone()))
            .collect();
        let apps = Apps::open(
            &member,
            config.applications.clone(),
            |n| config.node(n).map(|n| n.node_id),
            &state_dir,
            names,
            Vec::new(),
        );
        let events = &member.events;
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
        let (link_incarnation, incarnation_rx) = tokio::sync::watch::channel(incarnation);
        let link = start_host_link(&config, &member, link_key, node, me, incarnation_rx)?;
        Ok(Agent {
            config,
            member,
            membership,
            nodes,
            apps,
            declared_dead: false,
            link,
            link_incarnation,
            linked_to: None,
            kills_due: Vec::new(),
            kills_sent: std::collections::BTreeMap::new(),
            next_kill: 0,
            kills_reported: std::collections::BTreeSet::new(),
            migrations: migration::Migrations::default(),
        })
    }

    fn now(&self) -> Duration {
        self.member.now()
    }

    fn name(&self, id: NodeId) -> String {
        self.member
            .configured_name(id)
            .map_or_else(|| format!("node {id}"), str::to_string)
    }

    /// Runs until `shutdown` resolves, then stops the applications running here and
    /// returns once they are stopped.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut leaving: Option<Instant> = None;
        loop {
            // Heartbeats first, then the tick, then everything else.
            let (frames, inputs) = self.member.queues();
            tokio::select! {
                biased;
                Some(frame) = frames.recv() => self.on_frame(frame),
                _ = ticker.tick() => {
                    self.tick();
                    self.member.service_tick(&self.membership, "node");
                    if let Some(since) = leaving {
                        if self.apps.engine.all_inactive() || since.elapsed() > Apps::SHUTDOWN_LIMIT {
                            break;
                        }
                    }
                }
                _ = &mut shutdown, if leaving.is_none() => {
                    leaving = Some(Instant::now());
                    let node = self.member.own_name.clone();
                    self.member.events.record(Some(&node), "agent_stopping", format!("{node}: shutting down: stopping the applications running here (reason SHUT)"), json!({}));
                    let actions = self.apps.engine.shutdown(self.now());
                    self.perform_apps(actions);
                }
                Some(input) = inputs.recv() => self.on_input(input),
            }
            self.flush_announce();
        }
        // Tell the peers once more that nothing runs here any more.
        self.send_heartbeats();
        self.member.stop();
        tracing::info!("guest agent stopped");
        Ok(())
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Admin(AdminCall::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            Input::Admin(AdminCall::Operator { request, reply }) => {
                let response = self.operator(request);
                let _ = reply.send(response);
            }
            Input::Link(event) => self.on_link(event),
            Input::OpDone { id, outcome } => {
                let actions = self.apps.engine.on_result(self.now(), id, outcome);
                self.perform_apps(actions);
            }
        }
    }

    fn tick(&mut self) {
        self.request_kills();
        self.update_migration_hold();
        let now = self.now();
        let actions = self.membership.tick(now);
        self.perform(actions);
        self.update_nodes();
        let actions = self.apps.engine.tick(now);
        self.perform_apps(actions);
    }

    fn flush_announce(&mut self) {
        if std::mem::take(&mut self.apps.announce) {
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
            self.member.events.record(
                Some(&name),
                "node_state",
                format!("{name}: {} -> {}", c.from, c.to),
                json!({ "from": c.from, "to": c.to }),
            );
        }
        if !changes.is_empty() {
            let actions = self.apps.engine.set_nodes(self.now(), self.nodes.views());
            self.perform_apps(actions);
        }
        for c in changes
            .iter()
            .filter(|c| c.to != GuestNodeState::LeftCluster)
        {
            self.kills_reported.remove(&c.node);
        }
        if self.link.is_some() {
            let me = self.member.me;
            for c in changes
                .iter()
                .filter(|c| c.to == GuestNodeState::LeftCluster)
            {
                // Across a partition of the guests alone, the lower node id asks first,
                // so only one side is killed.
                let delay = if c.node < me {
                    KILL_STAGGER
                } else {
                    Duration::ZERO
                };
                self.kills_due.push((c.node, Instant::now() + delay, false));
            }
        }
    }

    fn on_frame(&mut self, frame: Received<GuestHeartbeat>) {
        let hb = frame.heartbeat;
        let now = self.member.clock_at(frame.at);
        let (sender, incarnation) = (hb.sender, hb.incarnation);
        let membership = &hb.payload.membership;
        let fresh = self.membership.is_fresh(membership);
        let actions =
            self.membership
                .on_heartbeat(now, sender, incarnation, hb.accepted, membership);
        self.perform(actions);
        if !fresh {
            // Possibly recorded before this agent started: nothing in it is news.
            self.member.counters.bump("heartbeats_unconfirmed");
            return;
        }
        self.update_nodes();
        self.migration_heard(now, sender, hb.payload.migrating_ms);
        let actions = self
            .apps
            .engine
            .on_gossip(now, sender, incarnation, &hb.payload.gossip);
        self.perform_apps(actions);
        for proof in hb.payload.proofs {
            self.on_proof(sender, proof);
        }
    }

    fn on_proof(&mut self, from: NodeId, proof: DownProof) {
        if proof.node == self.member.me {
            if proof.incarnation == self.membership.incarnation() && !self.declared_dead {
                // The others hold this node dead and may take over its applications:
                // nothing may run here any more.
                self.declared_dead = true;
                let by = self.name(from);
                let node = self.member.own_name.clone();
                self.member.events.record(
                    Some(&node),
                    "declared_down",
                    format!("{node}: {by} holds this node DOWN: stopping every application here; restart hv-guestd to rejoin"),
                    json!({ "by": by }),
                );
                let actions = self.apps.engine.abandon(self.now());
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
                        self.member.events.record(
                            subject.as_deref(),
                            kind,
                            message,
                            serde_json::to_value(&e).unwrap_or_default(),
                        );
                    }
                }
                Action::Rejoin => {
                    let actions = self.member.rejoin(
                        &mut self.membership,
                        &self.config.cluster.state_dir,
                        "rejoin",
                        |node, inc| {
                            format!("{node}: rejoining the guest cluster with incarnation {inc}")
                        },
                    );
                    let _ = self.link_incarnation.send(self.membership.incarnation());
                    self.perform(actions);
                }
            }
        }
    }

    fn perform_apps(&mut self, actions: Vec<AppAction>) {
        let done = |id, outcome| Input::OpDone { id, outcome };
        for n in self.apps.perform(actions, &mut self.member, done) {
            if self.linked_to.is_some() {
                // HaltFlag: killed through the hosts like a silent partner.
                self.kills_due.push((n, Instant::now(), true));
                continue;
            }
            let name = self.name(n);
            self.member.events.record(
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

    fn send_heartbeats(&mut self) {
        let gossip = self.apps.engine.gossip();
        let proofs = self.nodes.proofs();
        let migrating_ms = self.migrating_ms();
        for ic in 0..self.member.outbox.interconnects() {
            let hb = GuestHeartbeat {
                membership: self.membership.heartbeat(ic),
                gossip: gossip.clone(),
                proofs: proofs.clone(),
                migrating_ms,
            };
            let report = self
                .member
                .outbox
                .send(ic, self.membership.incarnation(), &hb);
            self.member
                .counters
                .add("send_errors", report.failed.len() as u64);
            if let Some(why) = report.unsendable {
                let node = self.member.own_name.clone();
                self.member.record_limited(
                    "heartbeats_unsendable",
                    Some(&node),
                    "heartbeat_unsendable",
                    |since| {
                        tracing::error!(cause = %why, since, "heartbeat not sent");
                        format!(
                            "{since} heartbeat(s) could not be sent since the last report: {why}"
                        )
                    },
                    serde_json::json!({ "why": why }),
                );
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
        let node = self.member.own_name.clone();
        let accepted = result.is_ok();
        let verdict = match &result {
            Ok(m) => format!("done: {m}"),
            Err(m) => format!("refused: {m}"),
        };
        self.member.events.record(
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
        let (message, actions) = self.apps.engine.command(now, app, command)?;
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
        if id == self.member.me {
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
        self.apps.announce = true;
        Ok(format!(
            "{node} is DOWN (operator's word): its applications may now switch"
        ))
    }

    fn status(&self) -> GuestStatus {
        let mut status = describe::status(self);
        status.host_link = self.linked_to.clone();
        status
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
            self.member.me,
            &self.member.own_name,
            &self.membership,
            &self.nodes,
            &self.apps.engine,
            &self.member.counters,
            self.member.started_unix_ms(),
            self.now(),
        )
    }
}
