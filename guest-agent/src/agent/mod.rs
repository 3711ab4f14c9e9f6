//! The guest agent's driver loop: turns what arrives (heartbeats, host-link messages,
//! resource results, operator requests, ticks) into events for the guest core
//! ([`GuestCore`]) and performs the effects it returns. Every decision is the core's.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use hvcluster_common::admin::{GuestStatus, Request, Response};
use hvcluster_common::application::{Engine, GuestHeartbeat, GuestNodes, OpOutcome};
use hvcluster_common::config::guest::{GuestConfig, LoadedGuestConfig};
use hvcluster_common::config::NodeId;
use hvcluster_common::guest::{Effect, Event, GuestCore, GuestSetup};
use hvcluster_common::membership::Membership;
use hvcluster_runtime::admin::{self, AdminCall, Dispatch};
use hvcluster_runtime::counters::Counters;
use hvcluster_runtime::incarnation;
use hvcluster_runtime::member::Member;
use hvcluster_runtime::net::{Received, Roster};
use tokio::sync::mpsc;

mod linked;

use linked::start_host_link;

use crate::describe;
use hvcluster_runtime::apps::{self, AppRunner};

/// How often the loop ticks the core.
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
    core: GuestCore,
    /// Runs resource operations and writes the application state.
    runner: AppRunner,
    /// Sends messages to the host agent, when the host link is configured.
    link: Option<mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>,
    /// Tells the host link this agent's incarnation (it registers again when it changes).
    link_incarnation: tokio::sync::watch::Sender<u64>,
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
        let state_file = apps::state::path(&state_dir);
        let (state, problem) = apps::state::load(&state_file);
        let mut setup = GuestSetup::from_config(&config, me, digest, state, incarnation);
        setup.state_problem = problem;
        let (core, effects) = GuestCore::start(setup, member.now());
        let runner = AppRunner::new(&member, config.applications.clone(), state_file, Vec::new());
        let (link_incarnation, incarnation_rx) = tokio::sync::watch::channel(incarnation);
        let link = start_host_link(&config, &member, link_key, node, me, incarnation_rx)?;
        let mut agent = Agent {
            config,
            member,
            core,
            runner,
            link,
            link_incarnation,
        };
        agent.perform(effects);
        Ok(agent)
    }

    fn now(&self) -> Duration {
        self.member.now()
    }

    /// Runs until `shutdown` resolves, then stops the applications running here and
    /// returns once they are stopped.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut leaving = false;
        loop {
            // Heartbeats first, then the tick, then everything else.
            let (frames, inputs) = self.member.queues();
            tokio::select! {
                biased;
                Some(frame) = frames.recv() => self.on_frame(frame),
                _ = ticker.tick() => {
                    let effects = self.core.tick(self.now());
                    let exit = effects.contains(&Effect::Exit);
                    self.perform(effects);
                    self.member.service_tick(self.core.membership(), "node");
                    if exit {
                        break;
                    }
                }
                _ = &mut shutdown, if !leaving => {
                    leaving = true;
                    self.step(Event::Shutdown);
                }
                Some(input) = inputs.recv() => self.on_input(input),
            }
        }
        self.member.stop();
        tracing::info!("guest agent stopped");
        Ok(())
    }

    fn step(&mut self, event: Event) -> Option<Response> {
        let effects = self.core.step(self.now(), event);
        self.perform(effects)
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Admin(AdminCall::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            Input::Admin(AdminCall::Operator { request, reply }) => {
                let response = self.step(Event::Operator(request));
                let _ = reply.send(response.unwrap_or_else(|| Response::Refused {
                    message: "the guest agent gave no answer".into(),
                }));
            }
            Input::Link(event) => {
                use crate::link::LinkEvent;
                let event = match event {
                    LinkEvent::Linked { host } => Event::Linked { host },
                    LinkEvent::Lost { why } => Event::LinkLost { why },
                    LinkEvent::Message(m) => Event::Link(m),
                };
                self.step(event);
            }
            Input::OpDone { id, outcome } => {
                self.step(Event::OpDone { id, outcome });
            }
        }
    }

    fn on_frame(&mut self, frame: Received<GuestHeartbeat>) {
        let hb = frame.heartbeat;
        let now = self.member.clock_at(frame.at);
        let event = Event::Heartbeat {
            sender: hb.sender,
            incarnation: hb.incarnation,
            accepted: hb.accepted,
            heartbeat: Box::new(hb.payload),
        };
        let effects = self.core.step(now, event);
        self.perform(effects);
    }

    /// Performs what the core returned, in order; returns the answer to an operator
    /// request among them.
    fn perform(&mut self, effects: Vec<Effect>) -> Option<Response> {
        let mut reply = None;
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::SendHeartbeats {
                    incarnation,
                    heartbeats,
                } => self.send_heartbeats(incarnation, &heartbeats),
                Effect::SendLink(message) => {
                    if let Some(link) = &self.link {
                        if link.try_send(message).is_err() {
                            self.member.counters.bump("host_link_send_errors");
                        }
                    }
                }
                Effect::RunOp(op) => {
                    self.runner
                        .run(op, &self.member, |id, outcome| Input::OpDone {
                            id,
                            outcome,
                        })
                }
                Effect::SaveState(state) => self.runner.save(&state, &self.member),
                Effect::NewIncarnation => {
                    let incarnation = incarnation::next(&self.config.cluster.state_dir);
                    let fresh = Event::Incarnation { incarnation };
                    queue.extend(self.core.step(self.now(), fresh));
                }
                Effect::Rejoined { incarnation } => {
                    self.member.outbox.restart();
                    let _ = self.link_incarnation.send(incarnation);
                }
                Effect::Record(r) => {
                    self.member
                        .events
                        .record(r.subject.as_deref(), r.kind, r.message, r.detail);
                }
                Effect::AppEvent(e) => {
                    let (subject, kind, message) = apps::app_event(&e, |n| self.member.name(n));
                    let detail = serde_json::to_value(&e).unwrap_or_default();
                    self.member
                        .events
                        .record(Some(&subject), kind, message, detail);
                }
                Effect::Count(counter) => self.member.counters.bump(counter),
                Effect::Reply(response) => reply = Some(response),
                // The loop ends after this tick.
                Effect::Exit => {}
            }
        }
        reply
    }

    fn send_heartbeats(&mut self, incarnation: u64, heartbeats: &[GuestHeartbeat]) {
        for (ic, hb) in heartbeats.iter().enumerate() {
            let report = self.member.outbox.send(ic, incarnation, hb);
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

    fn status(&self) -> GuestStatus {
        let mut status = describe::status(self);
        status.host_link = self.core.linked_to().map(str::to_string);
        status
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
            self.core.membership(),
            self.core.nodes(),
            self.core.engine(),
            &self.member.counters,
            self.member.started_unix_ms(),
            self.now(),
        )
    }
}
