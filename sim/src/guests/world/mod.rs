//! The world of the guest-cluster simulation: per node a guest agent, which is the real
//! [`GuestCore`] driven as `guest-agent/src/agent/mod.rs` drives it (events in, effects
//! performed); a network with cuts, loss and reordering that carries the heartbeats as
//! encoded on the wire; what each node's resources really do; and, in some runs, a host
//! link that kills nodes through the kill gate and tells the guests which nodes are down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use hvcluster_common::admin::{GuestNodeState, Request, Response};
use hvcluster_common::application::{
    AppSpec, AppState, Command, GuestHeartbeat, OpKind, OpOutcome, Persistent, Placement,
    ResourceOp, ResourceState,
};
use hvcluster_common::config::NodeId;
use hvcluster_common::guest::{Effect, Event, GuestCore, GuestSetup};
use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::kill_gate::{Admission, GuestKey, KillGate};
use hvcluster_common::membership::MembershipConfig;
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::ReplayWindow;

pub use crate::rng::Rng;

mod agent;
mod hostlink;
mod resources;
mod view;

/// One millisecond.
pub const MS: Duration = Duration::from_millis(1);
/// How often every running agent ticks (the guest agent ticks every 20 ms; coarser
/// here, which only hands the engine larger steps of time).
pub const TICK: Duration = Duration::from_millis(50);
const INTERVAL: Duration = Duration::from_millis(100);
const SUSPECT_AFTER: Duration = Duration::from_millis(400);
/// Silence before a node is Failed (LEFTCLUSTER).
pub const DEAD_AFTER: Duration = Duration::from_millis(800);
/// How long an operation that hangs runs before the runner kills it.
const OP_TIMEOUT: Duration = Duration::from_millis(4000);

/// How an injected fault makes an operation end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Broken {
    /// It exits non-zero.
    Fails,
    /// It hangs until the runner kills it at its timeout.
    Hangs,
}

/// A fault injected into one resource's operations on one node.
#[derive(Debug, Clone, Copy)]
pub struct Injection {
    /// How the operations end.
    pub broken: Broken,
    /// How many more operations it breaks.
    pub remaining: u32,
}

/// Key of an injection: (node, application, resource, operation).
pub type InjectionKey = (usize, usize, usize, u8);

/// The code of an operation in an [`InjectionKey`].
pub fn op_code(kind: OpKind) -> u8 {
    match kind {
        OpKind::Start => 0,
        OpKind::StartStandby => 1,
        OpKind::Stop => 2,
        OpKind::Check => 3,
    }
}

/// Whether a node's virtual machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Running.
    On,
    /// Frozen until then: nothing runs, its resources stay as they are.
    Hung {
        /// When it thaws.
        until: Duration,
    },
    /// Off: nothing of it runs.
    Off,
}

/// One guest agent: its core and what its driver keeps (clock origin, frame sequences,
/// replay windows, host link session).
#[derive(Debug)]
struct Agent {
    core: GuestCore,
    /// World time at which the agent started: the origin of its clock.
    origin: Duration,
    sequences: BTreeMap<NodeId, u64>,
    windows: BTreeMap<NodeId, ReplayWindow>,
    /// Its host link session: answers for an earlier session are lost with it.
    conn: u64,
}

#[derive(Debug)]
struct Flight {
    done_at: Duration,
    op: ResourceOp,
    broken: Option<Broken>,
}

/// One guest node: its virtual machine, its agent and its resources.
#[derive(Debug)]
pub struct Node {
    /// Whether the machine runs.
    pub power: Power,
    agent: Option<Agent>,
    /// When an agent that was killed comes back (the machine runs on meanwhile).
    pub agent_back_at: Option<Duration>,
    /// What the agent saved (placements, persistent faults).
    disk: Persistent,
    /// The incarnation counter on disk.
    incarnations: u64,
    /// The incarnation its agent had when it last stopped.
    pub last_incarnation: u64,
    /// `running[app][resource]`: what really runs here.
    pub running: Vec<Vec<bool>>,
    flights: Vec<Flight>,
}

impl Node {
    /// Whether an agent runs and is not frozen.
    pub fn serving(&self) -> bool {
        self.power == Power::On && self.agent.is_some()
    }
}

#[derive(Debug)]
struct Frame {
    at: Duration,
    from: usize,
    to: usize,
    incarnation: u64,
    sequence: u64,
    /// The heartbeat as the guest agent puts it on the wire.
    payload: Vec<u8>,
}

/// A kill request the hosts have to act on: (asker, target, the asker's link session
/// and request id when a guest core asked; none for a flood or an operator's note).
pub type KillAsk = (usize, usize, Option<(u64, u64)>);

/// The simulated guest cluster.
#[derive(Debug)]
pub struct World {
    /// World time.
    pub now: Duration,
    /// The applications.
    pub specs: Vec<AppSpec>,
    /// Node index `i` has id `i + 1`.
    pub nodes: Vec<Node>,
    frames: Vec<Frame>,
    /// Directed cuts (from, to).
    pub cut: BTreeSet<(usize, usize)>,
    /// Percent of frames lost.
    pub loss: u64,
    /// Faults injected into resource operations.
    pub injections: BTreeMap<InjectionKey, Injection>,
    /// Kill requests not acted on yet (with a host link), or HaltFlag kills the
    /// operator was asked to do (without).
    pub kill_requests: Vec<KillAsk>,
    /// Messages of the host link on their way to a guest: (node, link session, message).
    link_inbox: Vec<(usize, u64, LinkMessage)>,
    /// Host link sessions given so far.
    next_conn: u64,
    /// Host-down notices given so far.
    next_epoch: u64,
    /// Heartbeats that did not decode: a broken rule.
    pub wire_errors: Vec<String>,
    /// The hosts' kill gate: which requests become orders.
    gate: KillGate,
    /// Orders given, carried out at their time: (when, order, target, its incarnation
    /// as reported when ordered, the asker).
    orders: Vec<(Duration, u64, usize, Option<u64>, usize)>,
    next_order: u64,
    /// Every order given: (when, asker, target, the target's last incarnation then,
    /// whether or not its agent runs).
    pub ordered: Vec<(Duration, usize, usize, u64)>,
    /// A node whose agent asks, every tick until then, for every other node to be
    /// killed (a broken or hostile guest).
    pub flooding: Option<(usize, Duration)>,
    /// The hosts kill nodes on request and prove dead nodes down.
    pub host_link: bool,
    /// Nodes whose machine cannot run now (their host is off): not booted by a repair.
    pub held: Vec<bool>,
    /// A flaw for the checker's own test: the kill gate forgets every order at once.
    pub forgetful_gate: bool,
    /// Proofs the hosts will give: (when, node, incarnation).
    proofs_due: Vec<(Duration, usize, u64)>,
    /// Randomness for everything the world decides.
    pub rng: Rng,
    /// Print what happens.
    pub verbose: bool,
}

/// The guest cluster's name.
const CLUSTER: &str = "sim";

/// Node index `i` as the kill gate knows it.
fn guest_key(i: usize) -> GuestKey {
    (CLUSTER.to_string(), id(i))
}

/// Node id of node index `i`.
pub fn id(i: usize) -> NodeId {
    i as NodeId + 1
}

fn membership_config(me: NodeId, n: usize) -> MembershipConfig {
    MembershipConfig {
        me,
        hosts: (1..=n).map(|i| (i as NodeId, format!("g{i}"), 1)).collect(),
        interconnects: 1,
        interval: INTERVAL,
        suspect_after: SUSPECT_AFTER,
        dead_after: DEAD_AFTER,
        hung_limit: DEAD_AFTER,
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: n as u32,
            two_node: n == 2,
            wait_for_all: n == 2,
        },
        digest: [7; 16],
    }
}

impl World {
    /// `n` nodes running `specs`, every agent started at time zero.
    pub fn new(n: usize, specs: Vec<AppSpec>, host_link: bool, rng: Rng, verbose: bool) -> World {
        let running: Vec<Vec<bool>> = specs
            .iter()
            .map(|s| vec![false; s.resources.len()])
            .collect();
        let nodes = (0..n)
            .map(|_| Node {
                power: Power::On,
                agent: None,
                agent_back_at: None,
                disk: Persistent::default(),
                incarnations: 0,
                last_incarnation: 0,
                running: running.clone(),
                flights: Vec::new(),
            })
            .collect();
        let mut w = World {
            now: Duration::ZERO,
            specs,
            nodes,
            frames: Vec::new(),
            cut: BTreeSet::new(),
            loss: 0,
            injections: BTreeMap::new(),
            kill_requests: Vec::new(),
            link_inbox: Vec::new(),
            next_conn: 0,
            next_epoch: 0,
            wire_errors: Vec::new(),
            gate: KillGate::default(),
            orders: Vec::new(),
            next_order: 0,
            ordered: Vec::new(),
            flooding: None,
            host_link,
            held: vec![false; n],
            forgetful_gate: false,
            proofs_due: Vec::new(),
            rng,
            verbose,
        };
        for i in 0..n {
            w.boot_agent(i);
        }
        w
    }

    /// Prints `what` when verbose.
    pub fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("{:>8.2}s {}", self.now.as_secs_f64(), what());
        }
    }

    fn agent(&mut self, i: usize) -> &mut Agent {
        self.nodes[i].agent.as_mut().expect("the agent runs")
    }

    fn local(&self, i: usize) -> Duration {
        let origin = self.nodes[i].agent.as_ref().map_or(self.now, |a| a.origin);
        self.now - origin
    }

    fn boot_agent(&mut self, i: usize) {
        let n = self.nodes.len();
        let me = id(i);
        let node = &mut self.nodes[i];
        node.incarnations += 1;
        node.agent_back_at = None;
        let incarnation = node.incarnations;
        let setup = GuestSetup {
            cluster: CLUSTER.to_string(),
            membership: membership_config(me, n),
            dead_after: DEAD_AFTER,
            specs: self.specs.clone(),
            state: node.disk.clone(),
            state_problem: None,
            incarnation,
            host_link: self.host_link,
        };
        let (core, effects) = GuestCore::start(setup, Duration::ZERO);
        self.next_conn += 1;
        self.nodes[i].agent = Some(Agent {
            core,
            origin: self.now,
            sequences: BTreeMap::new(),
            windows: BTreeMap::new(),
            conn: self.next_conn,
        });
        self.log(|| format!("g{me} agent starts, incarnation {incarnation}"));
        self.perform(i, effects);
        if self.host_link {
            let host = format!("the host of g{me}");
            self.step_agent(i, Event::Linked { host });
        }
    }

    fn stop_agent(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(a) = node.agent.take() {
            node.last_incarnation = a.core.membership().incarnation();
        }
        // Its operations are killed with it before they did anything.
        node.flights.clear();
    }

    // ----- faults and repairs -----

    /// The machine dies with everything it ran; with a host link, its host proves it
    /// down a moment later.
    pub fn crash(&mut self, i: usize) {
        self.lose_power(i);
        if self.host_link {
            let at = self.now + self.rng.millis(200, 3000);
            self.proofs_due
                .push((at, i, self.nodes[i].last_incarnation));
        }
    }

    /// The machine dies with everything it ran, with nobody to prove it (its host died).
    pub fn lose_power(&mut self, i: usize) {
        self.stop_agent(i);
        let node = &mut self.nodes[i];
        node.power = Power::Off;
        node.agent_back_at = None;
        for app in &mut node.running {
            app.iter_mut().for_each(|r| *r = false);
        }
    }

    /// The machine freezes for `d`: its resources run on, nothing else does.
    pub fn hang(&mut self, i: usize, d: Duration) {
        self.nodes[i].power = Power::Hung {
            until: self.now + d,
        };
    }

    /// The agent dies and comes back after `d`; the machine and its resources run on.
    pub fn restart_agent(&mut self, i: usize, d: Duration) {
        self.stop_agent(i);
        self.nodes[i].agent_back_at = Some(self.now + d);
    }

    /// The machine boots after being off.
    pub fn boot(&mut self, i: usize) {
        self.nodes[i].power = Power::On;
        self.boot_agent(i);
    }

    /// A running resource dies.
    pub fn resource_dies(&mut self, i: usize, app: usize, r: usize) {
        self.nodes[i].running[app][r] = false;
    }

    /// Ends every fault: heals the network, thaws and boots every node, repairs every
    /// resource; forgets pending kill requests.
    pub fn restore(&mut self) {
        self.cut.clear();
        self.loss = 0;
        self.injections.clear();
        for (_, _, asked) in std::mem::take(&mut self.kill_requests) {
            if let Some((conn, request)) = asked {
                self.answer(conn, request, false, "the request was dropped", 0);
            }
        }
        self.flooding = None;
        // Orders in flight are carried out first, as the hosts would.
        for (_, order, target, _, _) in std::mem::take(&mut self.orders) {
            self.carry_out(order, target);
        }
        for i in 0..self.nodes.len() {
            match self.nodes[i].power {
                Power::Off if self.held[i] => {}
                Power::Off => self.boot(i),
                Power::Hung { .. } => self.nodes[i].power = Power::On,
                Power::On if self.nodes[i].agent.is_none() => self.boot_agent(i),
                Power::On => {}
            }
        }
    }

    // ----- time -----

    /// One tick of world time: thaws, agent restarts, frames, operation results, ticks.
    pub fn tick(&mut self) {
        self.now += TICK;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if matches!(self.nodes[i].power, Power::Hung { until } if until <= now) {
                self.nodes[i].power = Power::On;
                self.log(|| format!("g{} thaws", id(i)));
            }
            let back = self.nodes[i].agent_back_at.is_some_and(|t| t <= now);
            if back && self.nodes[i].power == Power::On {
                self.boot_agent(i);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.frames)
            .into_iter()
            .partition(|f| f.at <= now);
        self.frames = later;
        self.deliver_link();
        for frame in due {
            if self.nodes[frame.to].serving() {
                self.on_frame(frame);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].serving() {
                self.complete_flights(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].serving() {
                self.tick_agent(i);
            }
        }
        if self.host_link {
            self.host_kills();
            self.give_proofs();
        }
    }
}
