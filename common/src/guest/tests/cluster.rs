//! A guest cluster of `GuestCore`s on virtual time, for the tests: a perfect network
//! that can be cut, resources that do what they are told (or fail once when asked to),
//! and hosts that answer kill requests through the kill gate.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::admin::{GuestNodeState, Response};
use crate::application::{
    AppEvent, AppSpec, AppState, GuestHeartbeat, OpKind, OpOutcome, Persistent, ResourceOp,
    ResourceState,
};
use crate::config::NodeId;
use crate::guest::{Effect, Event, GuestCore, GuestSetup};
use crate::hostlink::LinkMessage;
use crate::kill_gate::{Admission, KillGate};
use crate::membership::MembershipConfig;
use crate::quorum::QuorumRules;
use crate::wire::ReplayWindow;

/// One tick of the cluster.
pub const TICK: Duration = Duration::from_millis(50);
/// How long a resource operation takes.
const OP_TIME: Duration = Duration::from_millis(100);
/// How long a host takes to destroy a guest it was ordered to kill.
const KILL_TIME: Duration = Duration::from_millis(100);
const CLUSTER: &str = "erp";

/// Node index `i` has id `i + 1` and is named `g{i+1}`.
pub fn id(i: usize) -> NodeId {
    i as NodeId + 1
}

/// An application on `nodes` (most preferred first) with one checked resource,
/// switching on host and resource failures.
pub fn app(name: &str, nodes: &[NodeId], halt_flag: bool) -> AppSpec {
    AppSpec {
        halt_flag,
        ..AppSpec::for_tests(name, nodes, 1)
    }
}

/// The setup of node index `i` of `n`.
pub fn setup(i: usize, n: usize, specs: &[AppSpec], state: Persistent, inc: u64) -> GuestSetup {
    GuestSetup {
        cluster: CLUSTER.into(),
        membership: MembershipConfig {
            me: id(i),
            hosts: (0..n).map(|j| (id(j), format!("g{}", id(j)), 1)).collect(),
            interconnects: 1,
            interval: Duration::from_millis(100),
            suspect_after: Duration::from_millis(400),
            dead_after: Duration::from_millis(800),
            hung_limit: Duration::from_millis(800),
            rejoin_heartbeats: 3,
            quorum: QuorumRules {
                total_votes: n as u32,
                two_node: n == 2,
                wait_for_all: n == 2,
            },
            digest: [7; 16],
        },
        dead_after: Duration::from_millis(800),
        specs: specs.to_vec(),
        state,
        state_problem: None,
        incarnation: inc,
        host_link: true,
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

/// A kill order in flight: when it is carried out, its number, the target.
struct Order {
    at: Duration,
    order: u64,
    target: usize,
}

/// The simulated guest cluster.
pub struct Cluster {
    /// World time, also every core's clock.
    pub now: Duration,
    /// The applications.
    pub specs: Vec<AppSpec>,
    /// The cores; `None` while a node is down.
    pub cores: Vec<Option<GuestCore>>,
    /// The incarnation counter on each node's disk.
    counters: Vec<u64>,
    /// The incarnation each node's agent runs with.
    incarnations: Vec<u64>,
    disks: Vec<Persistent>,
    frames: Vec<Frame>,
    sequences: Vec<u64>,
    windows: BTreeMap<(usize, usize), ReplayWindow>,
    /// Directed cuts (from, to).
    pub cut: BTreeSet<(usize, usize)>,
    /// `running[node][app]`: what really runs.
    pub running: Vec<Vec<bool>>,
    ops: Vec<(Duration, usize, ResourceOp)>,
    /// The next operation of this kind of this application on this node fails.
    pub fail: Vec<(usize, usize, OpKind)>,
    /// The host each node is linked to.
    pub linked: Vec<Option<String>>,
    /// The hosts' kill gate.
    pub gate: KillGate,
    orders: Vec<Order>,
    next_order: u64,
    /// Answers of the hosts, given at the next tick: (node, message).
    answers: Vec<(usize, LinkMessage)>,
    /// Whether the nodes have a host link configured.
    host_link: bool,
    /// What every node did that the tests look at, one line each.
    pub log: Vec<String>,
    /// Every effect, by node, for assertions.
    pub effects: Vec<(usize, Effect)>,
}

impl Cluster {
    /// `n` nodes running `specs`, started at time zero, not linked.
    pub fn new(n: usize, specs: Vec<AppSpec>) -> Cluster {
        Cluster::configured(n, specs, true)
    }

    /// [`Cluster::new`], with a host link configured or not.
    pub fn configured(n: usize, specs: Vec<AppSpec>, host_link: bool) -> Cluster {
        let mut c = Cluster {
            host_link,
            now: Duration::ZERO,
            running: vec![vec![false; specs.len()]; n],
            specs,
            cores: (0..n).map(|_| None).collect(),
            counters: vec![0; n],
            incarnations: vec![0; n],
            disks: vec![Persistent::default(); n],
            frames: Vec::new(),
            sequences: vec![0; n],
            windows: BTreeMap::new(),
            cut: BTreeSet::new(),
            ops: Vec::new(),
            fail: Vec::new(),
            linked: vec![None; n],
            gate: KillGate::default(),
            orders: Vec::new(),
            next_order: 0,
            answers: Vec::new(),
            log: Vec::new(),
            effects: Vec::new(),
        };
        for i in 0..n {
            c.boot(i);
        }
        c
    }

    /// Starts node `i`'s agent.
    pub fn boot(&mut self, i: usize) {
        let n = self.cores.len();
        self.counters[i] += 1;
        self.incarnations[i] = self.counters[i];
        let mut s = setup(
            i,
            n,
            &self.specs,
            self.disks[i].clone(),
            self.incarnations[i],
        );
        s.host_link = self.host_link;
        let (core, effects) = GuestCore::start(s, self.now);
        self.cores[i] = Some(core);
        self.sequences[i] = 0;
        self.perform(i, effects);
    }

    /// Links every node `i` to host `hv{i+1}`.
    pub fn link_all(&mut self) {
        for i in 0..self.cores.len() {
            self.link(i, &format!("hv{}", id(i)));
        }
    }

    /// Node `i` links to host `host`.
    pub fn link(&mut self, i: usize, host: &str) {
        self.linked[i] = Some(host.to_string());
        self.step(i, Event::Linked { host: host.into() });
    }

    /// The core of node `i`.
    pub fn core(&self, i: usize) -> &GuestCore {
        self.cores[i].as_ref().expect("the node runs")
    }

    /// Node `i` and everything it runs die.
    pub fn crash(&mut self, i: usize) {
        self.cores[i] = None;
        self.linked[i] = None;
        self.running[i].iter_mut().for_each(|r| *r = false);
        self.ops.retain(|(_, n, _)| *n != i);
    }

    /// Node `i` is paused for `d` (a migration's last step): it neither runs nor hears.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let core = self.cores[i].take();
        self.run(d);
        self.cores[i] = core;
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.cores.len() {
            if j != i {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
    }

    /// Handles `event` on node `i` now and performs what it returns.
    pub fn step(&mut self, i: usize, event: Event) -> Vec<Effect> {
        let Some(core) = self.cores[i].as_mut() else {
            return Vec::new();
        };
        let effects = core.step(self.now, event);
        self.perform(i, effects.clone());
        effects
    }

    /// The answer of node `i` to operator request `request`.
    pub fn operator(&mut self, i: usize, request: crate::admin::Request) -> Response {
        let effects = self.step(i, Event::Operator(request));
        effects
            .into_iter()
            .find_map(|e| match e {
                Effect::Reply(r) => Some(r),
                _ => None,
            })
            .expect("an operator request is answered")
    }

    /// Runs for `d`.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
        }
    }

    fn tick(&mut self) {
        self.now += TICK;
        let now = self.now;
        let (due, later) = std::mem::take(&mut self.frames)
            .into_iter()
            .partition(|f: &Frame| f.at <= now);
        self.frames = later;
        for f in due {
            if self.cores[f.to].is_none() {
                continue;
            }
            let window = self.windows.entry((f.from, f.to)).or_default();
            let Ok(accepted) = window.accept(f.incarnation, f.sequence) else {
                continue;
            };
            let event = Event::Heartbeat {
                sender: id(f.from),
                incarnation: f.incarnation,
                accepted,
                heartbeat: Box::new(f.hb),
            };
            self.step(f.to, event);
        }
        for (i, answer) in std::mem::take(&mut self.answers) {
            self.step(i, Event::Link(answer));
        }
        let (due, later) = std::mem::take(&mut self.ops)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.ops = later;
        for (_, i, op) in due {
            let outcome = self.outcome(i, &op);
            self.step(i, Event::OpDone { id: op.id, outcome });
        }
        for i in 0..self.cores.len() {
            if let Some(core) = self.cores[i].as_mut() {
                let effects = core.tick(now);
                self.perform(i, effects);
            }
        }
        let (due, later) = std::mem::take(&mut self.orders)
            .into_iter()
            .partition(|o: &Order| o.at <= now);
        self.orders = later;
        for o in due {
            self.log.push(format!("hosts destroy g{}", id(o.target)));
            self.crash(o.target);
            for (asker, request) in self.gate.settled(now, o.order, true, "destroyed") {
                let result = LinkMessage::KillResult {
                    request,
                    ok: true,
                    detail: "destroyed".into(),
                    retry_after_ms: 0,
                };
                self.step(asker as usize, Event::Link(result));
            }
        }
    }

    fn outcome(&mut self, i: usize, op: &ResourceOp) -> OpOutcome {
        let key = (i, op.app, op.kind);
        if let Some(at) = self.fail.iter().position(|f| *f == key) {
            self.fail.remove(at);
            return OpOutcome::Failed {
                code: Some(1),
                detail: "injected".into(),
            };
        }
        let running = &mut self.running[i][op.app];
        match op.kind {
            OpKind::Start => *running = true,
            OpKind::Stop => *running = false,
            OpKind::Check | OpKind::StartStandby => {}
        }
        OpOutcome::Done(if *running {
            ResourceState::Online
        } else {
            ResourceState::Offline
        })
    }

    fn perform(&mut self, i: usize, effects: Vec<Effect>) {
        let me = format!("g{}", id(i));
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            self.effects.push((i, effect.clone()));
            match effect {
                Effect::SendHeartbeats {
                    incarnation,
                    mut heartbeats,
                } => {
                    let hb = heartbeats.remove(0);
                    for to in (0..self.cores.len()).filter(|&to| to != i) {
                        self.sequences[i] += 1;
                        if self.cut.contains(&(i, to)) {
                            continue;
                        }
                        self.frames.push(Frame {
                            at: self.now + TICK,
                            from: i,
                            to,
                            incarnation,
                            sequence: self.sequences[i],
                            hb: hb.clone(),
                        });
                    }
                }
                Effect::SendLink(m) => {
                    self.log
                        .push(format!("{me} to its host: {}", show_link(&m)));
                    if self.linked[i].is_some() {
                        self.host_hears(i, m);
                    }
                }
                Effect::RunOp(op) => {
                    if op.kind != OpKind::Check {
                        let app = &self.specs[op.app].name;
                        self.log.push(format!("{me} runs {:?} {app}", op.kind));
                    }
                    self.ops.push((self.now + OP_TIME, i, op));
                }
                Effect::SaveState(state) => self.disks[i] = state,
                Effect::NewIncarnation => {
                    self.counters[i] += 1;
                    let incarnation = self.counters[i];
                    let core = self.cores[i].as_mut().expect("the node runs");
                    queue.extend(core.step(self.now, Event::Incarnation { incarnation }));
                }
                Effect::Rejoined { incarnation } => {
                    self.incarnations[i] = incarnation;
                    self.sequences[i] = 0;
                }
                Effect::Record(r) => self.log.push(format!("{me} {}: {}", r.kind, r.message)),
                Effect::AppEvent(AppEvent::State { app, from, to }) => {
                    self.log.push(format!("{me} {app}: {from} -> {to}"));
                }
                Effect::AppEvent(_) | Effect::Count(_) => {}
                Effect::Exit => self.log.push(format!("{me} exits")),
                Effect::Reply(r) => self.log.push(format!("{me} answers: {}", show_reply(&r))),
            }
        }
    }

    /// The hosts' side of a message of node `i`: kill requests go through the gate.
    fn host_hears(&mut self, i: usize, m: LinkMessage) {
        let LinkMessage::KillRequest {
            request, node_id, ..
        } = m
        else {
            return;
        };
        let target = node_id as usize - 1;
        let asker = (CLUSTER.to_string(), id(i));
        let key = (CLUSTER.to_string(), node_id);
        let incarnation = self.cores[target]
            .as_ref()
            .map(|c| c.membership().incarnation());
        let answer = |ok: bool, detail: String, retry_after_ms| LinkMessage::KillResult {
            request,
            ok,
            detail,
            retry_after_ms,
        };
        match self.gate.admit(self.now, &asker, &key, incarnation) {
            Admission::Order => {
                self.next_order += 1;
                let order = self.next_order;
                self.gate.ordered(&key, order, incarnation);
                self.gate.wait(&key, i as u64, request);
                self.log.push(format!("hosts order g{node_id} killed"));
                self.orders.push(Order {
                    at: self.now + KILL_TIME,
                    order,
                    target,
                });
            }
            Admission::Join { .. } => {
                self.gate.wait(&key, i as u64, request);
            }
            Admission::AlreadyDead {
                detail,
                retry_after_ms,
            } => {
                let detail = format!("killed already: {detail}");
                self.log.push(format!(
                    "hosts refuse: {detail} (ask again in {retry_after_ms} ms)"
                ));
                self.answers
                    .push((i, answer(false, detail, retry_after_ms)));
            }
            Admission::Limited { retry_after_ms } => {
                let detail = "too many kill requests: ask again later".to_string();
                self.log
                    .push(format!("hosts refuse: {detail} (in {retry_after_ms} ms)"));
                self.answers
                    .push((i, answer(false, detail, retry_after_ms)));
            }
        }
    }

    /// Node `i`'s view of application `app`.
    pub fn app_state(&self, i: usize, app: usize) -> AppState {
        self.core(i).engine().views()[app].local
    }

    /// Node `j`'s state as node `i` sees it.
    pub fn node_state(&self, i: usize, j: usize) -> Option<GuestNodeState> {
        self.core(i).nodes().state_of(id(j))
    }

    /// The nodes where application `app` really runs.
    pub fn running_on(&self, app: usize) -> Vec<NodeId> {
        (0..self.cores.len())
            .filter(|&i| self.running[i][app])
            .map(id)
            .collect()
    }

    /// The lines logged since the last call.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// Whether node `i` sent a message like `m` to its host.
    pub fn sent_to_host(&self, i: usize, m: impl Fn(&LinkMessage) -> bool) -> bool {
        self.effects
            .iter()
            .any(|(n, e)| *n == i && matches!(e, Effect::SendLink(l) if m(l)))
    }

    /// The incarnation node `i`'s agent runs with.
    pub fn incarnation(&self, i: usize) -> u64 {
        self.incarnations[i]
    }
}

fn show_link(m: &LinkMessage) -> String {
    match m {
        LinkMessage::KillRequest { node_id, .. } => format!("kill g{node_id}"),
        LinkMessage::HostDownAck { epoch } => format!("host-down notice {epoch} applied"),
        LinkMessage::MigrationAnswer { ok, detail, .. } => {
            format!(
                "{} ({detail})",
                if *ok { "may move" } else { "may not move" }
            )
        }
        other => other.name().to_string(),
    }
}

fn show_reply(r: &Response) -> String {
    match r {
        Response::Done { message } => format!("done: {message}"),
        Response::Refused { message } => format!("refused: {message}"),
        other => format!("{other:?}"),
    }
}
