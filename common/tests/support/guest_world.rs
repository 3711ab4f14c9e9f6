//! The world of the guest-cluster simulation: per node the cores of a guest agent
//! (membership, guest node states, userApplication engine) driven in the order of
//! `guest-agent/src/agent.rs`; a network with cuts, loss and reordering; what each
//! node's resources really do; and, in some runs, a host link that kills nodes and
//! proves dead ones down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{
    AppAction, AppSpec, AppState, Command, DownProof, Engine, GuestHeartbeat, GuestNodes,
    NodeChange, OpKind, OpOutcome, Persistent, Placement, ResourceOp, ResourceState,
};
use hvcluster_common::config::NodeId;
use hvcluster_common::kill_gate::{Admission, GuestKey, KillGate};
use hvcluster_common::membership::{Action, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::ReplayWindow;

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

/// splitmix64: small, seedable, good enough for schedules.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        MS * (lo + self.below(hi - lo + 1)) as u32
    }

    /// One element of `items`, if any.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len() as u64) as usize])
    }
}

/// How an injected fault makes an operation end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The cores of one guest agent, as `guest-agent/src/agent.rs` holds them.
struct Agent {
    membership: Membership,
    nodes: GuestNodes,
    engine: Engine,
    /// World time at which the agent started: the origin of its clock.
    origin: Duration,
    sequences: BTreeMap<NodeId, u64>,
    windows: BTreeMap<NodeId, ReplayWindow>,
    announce: bool,
    declared_dead: bool,
}

struct Flight {
    done_at: Duration,
    op: ResourceOp,
    broken: Option<Broken>,
}

/// One guest node: its virtual machine, its agent and its resources.
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

struct Frame {
    at: Duration,
    from: usize,
    to: usize,
    incarnation: u64,
    sequence: u64,
    hb: GuestHeartbeat,
}

/// The simulated guest cluster.
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
    /// HaltFlag kill requests not acted on yet: (requester, target).
    pub kill_requests: Vec<(usize, usize)>,
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
    /// Proofs the hosts will give: (when, node, incarnation).
    proofs_due: Vec<(Duration, usize, u64)>,
    /// Randomness for everything the world decides.
    pub rng: Rng,
    /// Print what happens.
    pub verbose: bool,
}

/// Node index `i` as the kill gate knows it.
fn guest_key(i: usize) -> GuestKey {
    ("sim".to_string(), id(i))
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
            gate: KillGate::default(),
            orders: Vec::new(),
            next_order: 0,
            ordered: Vec::new(),
            flooding: None,
            host_link,
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
        let ids: Vec<NodeId> = (0..n).map(id).collect();
        let node = &mut self.nodes[i];
        node.incarnations += 1;
        node.agent_back_at = None;
        let me = id(i);
        let mut engine = Engine::new(me, self.specs.clone(), &node.disk, Duration::ZERO);
        engine.set_names(ids.iter().map(|&j| (j, format!("g{j}"))).collect());
        node.agent = Some(Agent {
            membership: Membership::new(
                membership_config(me, n),
                node.incarnations,
                Duration::ZERO,
            ),
            nodes: GuestNodes::new(me, &ids, DEAD_AFTER),
            engine,
            origin: self.now,
            sequences: BTreeMap::new(),
            windows: BTreeMap::new(),
            announce: false,
            declared_dead: false,
        });
        let inc = node.incarnations;
        self.log(|| format!("g{me} agent starts, incarnation {inc}"));
    }

    fn stop_agent(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(a) = node.agent.take() {
            node.last_incarnation = a.membership.incarnation();
        }
        // Its operations are killed with it before they did anything.
        node.flights.clear();
    }

    // ----- faults and repairs -----

    /// The machine dies with everything it ran.
    pub fn crash(&mut self, i: usize) {
        self.stop_agent(i);
        let node = &mut self.nodes[i];
        node.power = Power::Off;
        node.agent_back_at = None;
        for app in &mut node.running {
            app.iter_mut().for_each(|r| *r = false);
        }
        if self.host_link {
            let at = self.now + self.rng.millis(200, 3000);
            self.proofs_due
                .push((at, i, self.nodes[i].last_incarnation));
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
        self.kill_requests.clear();
        self.flooding = None;
        // Orders in flight are carried out first, as the hosts would.
        for (_, order, target, _, _) in std::mem::take(&mut self.orders) {
            if self.nodes[target].power != Power::Off {
                self.crash(target);
            }
            self.gate.settled(self.now, order, true, "destroyed");
        }
        for i in 0..self.nodes.len() {
            match self.nodes[i].power {
                Power::Off => self.boot(i),
                Power::Hung { .. } => self.nodes[i].power = Power::On,
                Power::On if self.nodes[i].agent.is_none() => self.boot_agent(i),
                Power::On => {}
            }
        }
    }

    // ----- the host link -----

    /// What the hosts do about kill requests: each goes through the kill gate as on a
    /// real host; an order is carried out (the node destroyed) a moment later, then
    /// settled. A request refused for its rate is asked again (as a guest agent does).
    fn host_kills(&mut self) {
        let now = self.now;
        if let Some((by, until)) = self.flooding {
            if now >= until || !self.nodes[by].serving() {
                self.flooding = None;
            } else {
                let others = (0..self.nodes.len()).filter(|&t| t != by);
                self.kill_requests.extend(others.map(|t| (by, t)));
            }
        }
        let mut again = Vec::new();
        for (by, target) in std::mem::take(&mut self.kill_requests) {
            // The hosts report the incarnation of a guest whose agent is linked.
            let node = &self.nodes[target];
            let incarnation = node.agent.as_ref().map(|a| a.membership.incarnation());
            match self
                .gate
                .admit(now, &guest_key(by), &guest_key(target), incarnation)
            {
                Admission::Order => {
                    self.next_order += 1;
                    let order = self.next_order;
                    self.gate.ordered(&guest_key(target), order, incarnation);
                    let at = now + self.rng.millis(20, 400);
                    self.orders.push((at, order, target, incarnation, by));
                    let last = incarnation.unwrap_or(self.nodes[target].last_incarnation);
                    self.ordered.push((now, by, target, last));
                    self.log(|| {
                        format!("host orders g{} killed (asked by g{})", id(target), id(by))
                    });
                }
                // Answered when the order in flight settles; a guest already killed
                // is proved down by the hosts.
                Admission::Join { .. } | Admission::AlreadyDead { .. } => {}
                Admission::Limited { .. } => {
                    if !again.contains(&(by, target)) {
                        again.push((by, target));
                    }
                }
            }
        }
        self.kill_requests = again;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orders)
            .into_iter()
            .partition(|o| o.0 <= now);
        self.orders = later;
        for (_, order, target, _, by) in due {
            self.log(|| format!("host kills g{} (asked by g{})", id(target), id(by)));
            if self.nodes[target].power != Power::Off {
                self.crash(target);
            }
            self.gate.settled(now, order, true, "destroyed");
        }
    }

    fn give_proofs(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.proofs_due)
            .into_iter()
            .partition(|p| p.0 <= now);
        self.proofs_due = later;
        for (_, node, incarnation) in due {
            // The host proves only a machine that is still off.
            if self.nodes[node].power != Power::Off
                || self.nodes[node].last_incarnation != incarnation
            {
                continue;
            }
            let serving: Vec<usize> = (0..self.nodes.len())
                .filter(|&j| self.nodes[j].serving())
                .collect();
            let Some(to) = self.rng.pick(&serving) else {
                continue;
            };
            self.log(|| {
                format!(
                    "host proves g{} (inc {incarnation}) down to g{}",
                    id(node),
                    id(to)
                )
            });
            let proof = DownProof {
                node: id(node),
                incarnation,
            };
            self.on_proof(to, id(to), proof);
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

    // ----- the agent's driver loop, in agent.rs's order -----

    fn tick_agent(&mut self, i: usize) {
        let now = self.local(i);
        let actions = self.agent(i).membership.tick(now);
        self.perform(i, actions);
        self.update_nodes(i);
        let actions = self.agent(i).engine.tick(now);
        self.perform_apps(i, actions);
        self.flush_announce(i);
    }

    fn flush_announce(&mut self, i: usize) {
        if std::mem::take(&mut self.agent(i).announce) {
            self.send_heartbeats(i);
        }
    }

    fn update_nodes(&mut self, i: usize) {
        let now = self.local(i);
        let a = self.agent(i);
        let changes = a.nodes.update(&a.membership.peers(now));
        self.after_node_changes(i, changes);
    }

    fn after_node_changes(&mut self, i: usize, changes: Vec<NodeChange>) {
        for c in &changes {
            self.log(|| format!("g{} sees g{}: {} -> {}", id(i), c.node, c.from, c.to));
        }
        if !changes.is_empty() {
            let now = self.local(i);
            let a = self.agent(i);
            let views = a.nodes.views();
            let actions = a.engine.set_nodes(now, views);
            self.perform_apps(i, actions);
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        let i = frame.to;
        let sender = id(frame.from);
        let now = self.local(i);
        let a = self.agent(i);
        let Ok(accepted) = a
            .windows
            .entry(sender)
            .or_default()
            .accept(frame.incarnation, frame.sequence)
        else {
            return;
        };
        let actions = a.membership.on_heartbeat(
            now,
            sender,
            frame.incarnation,
            accepted,
            &frame.hb.membership,
        );
        self.perform(i, actions);
        self.update_nodes(i);
        let actions =
            self.agent(i)
                .engine
                .on_gossip(now, sender, frame.incarnation, &frame.hb.gossip);
        self.perform_apps(i, actions);
        for proof in frame.hb.proofs {
            self.on_proof(i, sender, proof);
        }
        self.flush_announce(i);
    }

    fn on_proof(&mut self, i: usize, from: NodeId, proof: DownProof) {
        let now = self.local(i);
        let a = self.agent(i);
        if proof.node == id(i) {
            if proof.incarnation == a.membership.incarnation() && !a.declared_dead {
                // The others hold this node dead and may take over: nothing may run here.
                a.declared_dead = true;
                let actions = a.engine.abandon(now);
                self.log(|| format!("g{} is held DOWN by g{from}: abandons", id(i)));
                self.perform_apps(i, actions);
            }
            return;
        }
        let change = a.nodes.prove_down(proof);
        if let Some(change) = change {
            self.after_node_changes(i, vec![change]);
        }
    }

    fn perform(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendHeartbeats => self.send_heartbeats(i),
                Action::Event(e) => self.log(|| format!("g{} {e:?}", id(i))),
                Action::Rejoin => {
                    let now = self.local(i);
                    self.nodes[i].incarnations += 1;
                    let inc = self.nodes[i].incarnations;
                    self.log(|| format!("g{} rejoins with incarnation {inc}", id(i)));
                    let a = self.agent(i);
                    a.sequences.clear();
                    let more = a.membership.rejoin(now, inc);
                    self.perform(i, more);
                }
            }
        }
    }

    fn perform_apps(&mut self, i: usize, actions: Vec<AppAction>) {
        for action in actions {
            match action {
                AppAction::Run(op) => self.run_op(i, op),
                AppAction::Event(e) => self.log(|| format!("g{} {e:?}", id(i))),
                AppAction::Persist => {
                    let saved = self.agent(i).engine.persistent();
                    self.nodes[i].disk = saved;
                }
                AppAction::Announce => self.agent(i).announce = true,
                AppAction::KillNode(n) => {
                    self.log(|| format!("g{} asks for g{n} to be killed", id(i)));
                    self.kill_requests.push((i, n as usize - 1));
                }
            }
        }
    }

    fn send_heartbeats(&mut self, i: usize) {
        let n = self.nodes.len();
        let a = self.nodes[i].agent.as_mut().expect("the agent runs");
        let hb = GuestHeartbeat {
            membership: a.membership.heartbeat(0),
            gossip: a.engine.gossip(),
            proofs: a.nodes.proofs(),
            migrating_ms: 0,
        };
        let incarnation = a.membership.incarnation();
        let mut sequences = Vec::new();
        for to in (0..n).filter(|&to| to != i) {
            let s = a.sequences.entry(id(to)).or_insert(0);
            *s += 1;
            sequences.push((to, *s));
        }
        for (to, sequence) in sequences {
            if self.cut.contains(&(i, to)) || self.rng.chance(self.loss) {
                continue;
            }
            // Mostly the next tick; now and then later, so frames overtake each other.
            let ticks = if self.rng.chance(15) {
                2 + self.rng.below(3) as u32
            } else {
                1
            };
            self.frames.push(Frame {
                at: self.now + TICK * ticks,
                from: i,
                to,
                incarnation,
                sequence,
                hb: hb.clone(),
            });
        }
    }

    // ----- resources -----

    fn run_op(&mut self, i: usize, op: ResourceOp) {
        let key = (i, op.app, op.resource, op_code(op.kind));
        let broken = match self.injections.get_mut(&key) {
            Some(inj) => {
                inj.remaining -= 1;
                let broken = inj.broken;
                if inj.remaining == 0 {
                    self.injections.remove(&key);
                }
                Some(broken)
            }
            None => None,
        };
        let took = match broken {
            Some(Broken::Hangs) => OP_TIMEOUT,
            _ => self.rng.millis(20, 1500),
        };
        self.log(|| {
            format!(
                "g{} runs {:?} a{}r{} ({took:?}{})",
                id(i),
                op.kind,
                op.app,
                op.resource,
                broken.map_or(String::new(), |b| format!(", {b:?}"))
            )
        });
        self.nodes[i].flights.push(Flight {
            done_at: self.now + took,
            op,
            broken,
        });
    }

    fn complete_flights(&mut self, i: usize) {
        let now = self.now;
        let mut due: Vec<Flight> = Vec::new();
        let flights = std::mem::take(&mut self.nodes[i].flights);
        for f in flights {
            if f.done_at <= now {
                due.push(f);
            } else {
                self.nodes[i].flights.push(f);
            }
        }
        due.sort_by_key(|f| f.done_at);
        for f in due {
            let outcome = self.outcome(i, &f);
            self.log(|| {
                format!(
                    "g{} {:?} a{}r{} -> {outcome:?}",
                    id(i),
                    f.op.kind,
                    f.op.app,
                    f.op.resource
                )
            });
            let local = self.local(i);
            let actions = self.agent(i).engine.on_result(local, f.op.id, outcome);
            self.perform_apps(i, actions);
            self.flush_announce(i);
        }
    }

    /// What the operation did to the resource, and what it reports.
    fn outcome(&mut self, i: usize, f: &Flight) -> OpOutcome {
        let failed = |what: &str| OpOutcome::Failed {
            code: Some(1),
            detail: format!("{what} failed (injected)"),
        };
        let partly = self.rng.chance(50);
        let r = &mut self.nodes[i].running[f.op.app][f.op.resource];
        match (f.op.kind, f.broken) {
            (OpKind::Start, None) => {
                *r = true;
                OpOutcome::Done(ResourceState::Online)
            }
            (OpKind::Start, Some(b)) => {
                // A start that fails or is killed may have got the resource running.
                *r = partly;
                match b {
                    Broken::Fails => failed("start"),
                    Broken::Hangs => OpOutcome::TimedOut,
                }
            }
            (OpKind::Stop, None) => {
                *r = false;
                OpOutcome::Done(ResourceState::Offline)
            }
            (OpKind::Stop, Some(Broken::Fails)) => failed("stop"),
            (OpKind::Stop, Some(Broken::Hangs)) => OpOutcome::TimedOut,
            (OpKind::Check, None) => OpOutcome::Done(if *r {
                ResourceState::Online
            } else {
                ResourceState::Offline
            }),
            (OpKind::Check, Some(Broken::Fails)) => failed("check"),
            (OpKind::Check, Some(Broken::Hangs)) => OpOutcome::TimedOut,
            (OpKind::StartStandby, _) => OpOutcome::Done(ResourceState::Standby),
        }
    }

    // ----- the operator -----

    /// An operator command for application `app`, given on node `i`.
    pub fn command(&mut self, i: usize, app: usize, command: Command) -> Result<String, String> {
        let now = self.local(i);
        let name = self.specs[app].name.clone();
        let (message, actions) = self.agent(i).engine.command(now, &name, command)?;
        self.perform_apps(i, actions);
        self.flush_announce(i);
        Ok(message)
    }

    /// `hvctl node down` for node `target`, given on node `i` (as agent.rs does it).
    pub fn node_down(&mut self, i: usize, target: usize) -> Result<String, String> {
        let now = self.local(i);
        let a = self.agent(i);
        let node = id(target);
        let peer = a.membership.peers(now).into_iter().find(|p| p.node == node);
        if let Some(why) = a.nodes.refuse_down(node, peer.as_ref()) {
            return Err(format!("g{node} cannot be marked down: {why}"));
        }
        let incarnation = peer.and_then(|p| p.incarnation).unwrap_or(0);
        let change = a.nodes.prove_down(DownProof { node, incarnation });
        if let Some(change) = change {
            self.after_node_changes(i, vec![change]);
        }
        self.agent(i).announce = true;
        self.flush_announce(i);
        Ok(format!("g{node} is DOWN (operator's word)"))
    }

    // ----- what can be seen -----

    /// Application `app`'s state on node `i` as its engine shows it.
    pub fn app_state(&self, i: usize, app: usize) -> Option<AppState> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.engine.views()[app].local)
    }

    /// Application `app` as node `i`'s engine shows it, for failure messages.
    pub fn describe(&self, i: usize, app: usize) -> String {
        match &self.nodes[i].agent {
            Some(a) => format!("{:?}", a.engine.views()[app]),
            None => "no agent".into(),
        }
    }

    /// Application `app`'s placement as node `i` knows it.
    pub fn placement(&self, i: usize, app: usize) -> Option<Placement> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.engine.views()[app].placement.clone())
    }

    /// Node `j`'s state as node `i` sees it.
    pub fn node_state(&self, i: usize, j: usize) -> Option<GuestNodeState> {
        self.nodes[i].agent.as_ref()?.nodes.state_of(id(j))
    }

    /// What application `app`'s checked resources really do on node `i`.
    ///
    /// A NULLDETECTOR resource is never checked, not even when an agent starts: if its
    /// agent died in the middle of a start or stop sequence, nothing can tell whether
    /// it runs. So only checked resources count, besides starts in flight.
    pub fn watched(&self, i: usize, app: usize) -> Vec<bool> {
        let spec = &self.specs[app];
        (0..spec.resources.len())
            .filter(|&r| spec.resources[r].monitored)
            .map(|r| self.nodes[i].running[app][r])
            .collect()
    }

    /// Whether application `app` really runs on node `i` (a checked resource runs), or
    /// is being started there.
    pub fn active(&self, i: usize, app: usize) -> bool {
        let node = &self.nodes[i];
        node.power != Power::Off
            && (self.watched(i, app).contains(&true)
                || node
                    .flights
                    .iter()
                    .any(|f| f.op.app == app && f.op.kind == OpKind::Start))
    }

    /// Whether a start or a stop of application `app` runs on node `i` (checks run
    /// all the time).
    pub fn busy(&self, i: usize, app: usize) -> bool {
        self.nodes[i]
            .flights
            .iter()
            .any(|f| f.op.app == app && f.op.kind != OpKind::Check)
    }
}
