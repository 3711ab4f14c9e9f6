//! `GuestCore`: every decision of the guest agent (hv-guestd) as one pure state machine.
//!
//! The driver turns what arrives into [`Event`]s for [`GuestCore::step`], calls
//! [`GuestCore::tick`] every few milliseconds, and performs the [`Effect`]s both return,
//! in order. Time is an argument (the agent's clock, from its start); nothing here reads
//! a clock, touches a socket or a file.
//!
//! Sub-machines, one per capability, composed here:
//! - `members`: the membership failure detector and the guest node states (UP, DOWN,
//!   LEFTCLUSTER, COMINGUP), down proofs, `hvctl node down`;
//! - the userApplication engine ([`crate::application::Engine`]), as it is;
//! - `link`: the host link (linked host, host-down notices);
//! - `kills`: asking the hosts to kill silent partners and HaltFlag nodes (their kill
//!   gate answers);
//! - `migration`: holds while this guest or a partner is being moved;
//! - `operator`: operator requests.

mod describe;
mod kills;
mod link;
mod members;
mod migration;
mod operator;
mod setup;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::admin::{Request, Response};
use crate::application::{AppAction, AppEvent, Engine, GuestHeartbeat, OpOutcome, ResourceOp};
use crate::application::{GuestNodes, Persistent};
use crate::config::NodeId;
use crate::hostlink::LinkMessage;
use crate::membership::Membership;
use crate::wire::Accepted;

pub use describe::membership_event;
pub use kills::KILL_STAGGER;
pub use setup::GuestSetup;

/// Something that arrived for the guest agent.
#[derive(Debug, Clone)]
pub enum Event {
    /// An authenticated heartbeat of partner `sender`.
    Heartbeat {
        /// The sender.
        sender: NodeId,
        /// The sender's incarnation.
        incarnation: u64,
        /// The replay window's verdict on the frame.
        accepted: Accepted,
        /// What it carries.
        heartbeat: Box<GuestHeartbeat>,
    },
    /// The host link registered with the host agent of `host`.
    Linked {
        /// The host.
        host: String,
    },
    /// The host link is down; it is being retried.
    LinkLost {
        /// Why.
        why: String,
    },
    /// A message from the host agent (host-down notice, kill result, migration).
    Link(LinkMessage),
    /// A resource operation ended.
    OpDone {
        /// Its id ([`ResourceOp::id`]).
        id: u64,
        /// How it ended.
        outcome: OpOutcome,
    },
    /// An operator request (a guest command); answered by [`Effect::Reply`].
    Operator(Request),
    /// The agent was asked to stop: the applications running here stop (reason SHUT).
    Shutdown,
    /// A fresh incarnation, stored, kept for the next rejoin (asked for by
    /// [`Effect::NewIncarnation`]).
    Incarnation {
        /// It.
        incarnation: u64,
    },
}

/// One event for the operator's event stream, worded here.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The node it is about, if any.
    pub subject: Option<String>,
    /// Its kind (`host_down_notice`, `kill_requested`, ...).
    pub kind: &'static str,
    /// What it says.
    pub message: String,
    /// Structured detail.
    pub detail: serde_json::Value,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send heartbeats under `incarnation`: element `i` on interconnect `i`.
    SendHeartbeats {
        /// The incarnation to send under.
        incarnation: u64,
        /// One heartbeat per interconnect.
        heartbeats: Vec<GuestHeartbeat>,
    },
    /// Send this message to the host agent over the host link.
    SendLink(LinkMessage),
    /// Run this resource operation; its end comes back as [`Event::OpDone`].
    RunOp(ResourceOp),
    /// Save the application state (placements, persistent faults).
    SaveState(Persistent),
    /// Take a fresh incarnation (stored) and step [`Event::Incarnation`] with it: the
    /// core keeps one in reserve, so that it rejoins within the step that calls for it.
    NewIncarnation,
    /// This agent rejoins its cluster under `incarnation`: start the frame sequences
    /// afresh and register the host link again under it.
    Rejoined {
        /// The new incarnation.
        incarnation: u64,
    },
    /// Record this event.
    Record(Record),
    /// Record this application event (worded with the application events' wording).
    AppEvent(AppEvent),
    /// Count one in this counter.
    Count(&'static str),
    /// Answer the operator request of this step.
    Reply(Response),
    /// The agent may exit: asked to stop, its applications are stopped (or did not stop
    /// within [`SHUTDOWN_LIMIT`]); the partners were sent a last heartbeat.
    Exit,
}

/// Longest wait for the applications to stop when the agent shuts down.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(900);

/// The guest agent's decisions.
#[derive(Debug)]
pub struct GuestCore {
    cluster: String,
    names: BTreeMap<NodeId, String>,
    membership: Membership,
    nodes: GuestNodes,
    engine: Engine,
    /// The others hold this node dead: nothing may run here until a restart.
    declared_dead: bool,
    /// Whether a host link is configured.
    has_link: bool,
    link: link::HostLink,
    kills: kills::Kills,
    migrations: migration::Migrations,
    /// Placements or reports changed: heartbeats go out at the end of the step.
    announce: bool,
    /// A fresh incarnation for the next rejoin.
    spare_incarnation: Option<u64>,
    /// A rejoin waits for a fresh incarnation.
    rejoin_waiting: bool,
    /// Asked to stop at this time; `None` once it may exit.
    leaving: Option<Duration>,
    exited: bool,
    /// Time of the step or tick being handled.
    now: Duration,
    out: Vec<Effect>,
}

impl GuestCore {
    /// Starts the core at `now`; the effects record the start (and a state that could
    /// not be read).
    pub fn start(setup: GuestSetup, now: Duration) -> (GuestCore, Vec<Effect>) {
        let me = setup.membership.me;
        let names: BTreeMap<NodeId, String> = setup
            .membership
            .hosts
            .iter()
            .map(|(id, name, _)| (*id, name.clone()))
            .collect();
        let ids: Vec<NodeId> = names.keys().copied().collect();
        let mut engine = Engine::new(me, setup.specs, &setup.state, now);
        engine.set_names(names.clone());
        let apps = engine.app_names().len();
        let mut core = GuestCore {
            cluster: setup.cluster,
            names,
            membership: Membership::new(setup.membership, setup.incarnation, now),
            nodes: GuestNodes::new(me, &ids, setup.dead_after),
            engine,
            declared_dead: false,
            has_link: setup.host_link,
            link: link::HostLink::default(),
            kills: kills::Kills::default(),
            migrations: migration::Migrations::default(),
            announce: false,
            spare_incarnation: None,
            rejoin_waiting: false,
            leaving: None,
            exited: false,
            now,
            out: Vec::new(),
        };
        let node = core.own_name();
        if let Some(problem) = setup.state_problem {
            core.record(Some(node.clone()), "state_unreadable", problem, json!({}));
        }
        let incarnation = setup.incarnation;
        core.record(
            Some(node.clone()),
            "agent_started",
            format!(
                "{node}: guest agent started (guest cluster {}, incarnation {incarnation}, {apps} application(s))",
                core.cluster
            ),
            json!({ "incarnation": incarnation }),
        );
        // One incarnation in reserve, for a rejoin.
        core.out.push(Effect::NewIncarnation);
        let effects = std::mem::take(&mut core.out);
        (core, effects)
    }

    /// Handles one event at `now` (for a heartbeat: when it was received).
    pub fn step(&mut self, now: Duration, event: Event) -> Vec<Effect> {
        self.now = now;
        match event {
            Event::Heartbeat {
                sender,
                incarnation,
                accepted,
                heartbeat,
            } => self.on_heartbeat(now, sender, incarnation, accepted, *heartbeat),
            Event::Linked { host } => self.on_linked(now, host),
            Event::LinkLost { why } => self.on_link_lost(now, why),
            Event::Link(message) => self.on_link_message(now, message),
            Event::OpDone { id, outcome } => {
                let actions = self.engine.on_result(now, id, outcome);
                self.apply_apps(now, actions);
            }
            Event::Operator(request) => {
                let response = self.operator(now, request);
                self.flush_announce();
                self.out.push(Effect::Reply(response));
            }
            Event::Shutdown => {
                if self.leaving.is_some() || self.exited {
                    return std::mem::take(&mut self.out);
                }
                self.leaving = Some(now);
                let node = self.own_name();
                self.record(
                    Some(node.clone()),
                    "agent_stopping",
                    format!("{node}: shutting down: stopping the applications running here (reason SHUT)"),
                    json!({}),
                );
                let actions = self.engine.shutdown(now);
                self.apply_apps(now, actions);
            }
            Event::Incarnation { incarnation } => self.incarnation_reserved(now, incarnation),
        }
        self.flush_announce();
        std::mem::take(&mut self.out)
    }

    /// Advances time: kill requests due, migration holds, silence, the engine.
    pub fn tick(&mut self, now: Duration) -> Vec<Effect> {
        self.now = now;
        self.request_kills(now);
        self.update_migration_hold(now);
        let actions = self.membership.tick(now);
        self.apply_membership(now, actions);
        self.update_nodes(now);
        let actions = self.engine.tick(now);
        self.apply_apps(now, actions);
        self.flush_announce();
        if let Some(since) = self.leaving {
            if self.engine.all_inactive() || now.saturating_sub(since) > SHUTDOWN_LIMIT {
                // Tell the peers once more that nothing runs here any more.
                self.leaving = None;
                self.exited = true;
                self.send_heartbeats();
                self.out.push(Effect::Exit);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The membership machine, for status.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The guest node states, for status.
    pub fn nodes(&self) -> &GuestNodes {
        &self.nodes
    }

    /// The application engine, for status.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The host this guest is linked to, while linked.
    pub fn linked_to(&self) -> Option<&str> {
        self.link.host.as_deref()
    }

    /// Whether no application runs or is being started or stopped here.
    pub fn all_inactive(&self) -> bool {
        self.engine.all_inactive()
    }

    /// The name of node `id`.
    pub fn name(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node {id}"))
    }

    fn own_name(&self) -> String {
        self.name(self.membership.me())
    }

    fn record(
        &mut self,
        subject: Option<String>,
        kind: &'static str,
        message: String,
        detail: serde_json::Value,
    ) {
        self.out.push(Effect::Record(Record {
            subject,
            kind,
            message,
            detail,
        }));
    }

    fn flush_announce(&mut self) {
        if std::mem::take(&mut self.announce) {
            self.send_heartbeats();
        }
    }

    fn send_heartbeats(&mut self) {
        let gossip = self.engine.gossip();
        let proofs = self.nodes.proofs();
        let migrating_ms = self.migrations.own_ms_left(self.now);
        let heartbeats = (0..self.membership.config().interconnects)
            .map(|ic| GuestHeartbeat {
                membership: self.membership.heartbeat(ic),
                gossip: gossip.clone(),
                proofs: proofs.clone(),
                migrating_ms,
            })
            .collect();
        self.out.push(Effect::SendHeartbeats {
            incarnation: self.membership.incarnation(),
            heartbeats,
        });
    }

    /// Performs what the engine returned; HaltFlag kills go to the kill asks.
    fn apply_apps(&mut self, now: Duration, actions: Vec<AppAction>) {
        for action in actions {
            match action {
                AppAction::Run(op) => self.out.push(Effect::RunOp(op)),
                AppAction::Event(e) => self.out.push(Effect::AppEvent(e)),
                AppAction::Persist => self.out.push(Effect::SaveState(self.engine.persistent())),
                AppAction::Announce => self.announce = true,
                AppAction::KillNode(n) => self.halt_kill(now, n),
            }
        }
    }
}
