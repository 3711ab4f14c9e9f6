//! The guest cluster's faults and operator actions as data: chosen from the world as it
//! is ([`choose`]), recorded, and applied ([`apply`]) on a replay as well. A step whose
//! target no longer fits (a replay shrunk around it) does nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{Command, OpKind};

use super::world::{id, op_code, Broken, Injection, Power, World, MS};
use crate::rng::Rng;

/// An operator command on an application, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Switch to this node (index), or to the best other node.
    Switch(Option<usize>),
    /// Bring Online.
    Online,
    /// Take Offline.
    Offline,
    /// Clear faults.
    Clear,
    /// Maintenance on or off.
    Maintenance(bool),
}

/// One step of the guest cluster. Nodes are indices (node id minus one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestStep {
    /// Time passes, in milliseconds.
    Wait(u64),
    /// A running resource (node, app, resource) dies.
    ResourceDies(usize, usize, usize),
    /// Operations (node, app, resource, kind) break: fail or hang, `times` times.
    BreakOp {
        /// Node, application, resource.
        at: (usize, usize, usize),
        /// Which operation.
        kind: OpKind,
        /// How it ends.
        broken: Broken,
        /// How many operations it breaks (`u32::MAX`: until repaired).
        times: u32,
    },
    /// Broken operations (node, app, resource, kind) work again.
    Repair(usize, usize, usize, OpKind),
    /// The operator, on a node, gives an application a command.
    Operator(usize, usize, Order),
    /// A node's machine crashes.
    Crash(usize),
    /// A node's machine freezes, for milliseconds.
    Hang(usize, u64),
    /// A node's agent dies and comes back after milliseconds.
    AgentRestart(usize, u64),
    /// A node that is off boots.
    Boot(usize),
    /// The link between two nodes is cut both ways.
    Cut(usize, usize),
    /// Frames from one node to another are lost.
    CutOneWay(usize, usize),
    /// A node is cut off from every other.
    Isolate(usize),
    /// Every cut heals and no frame is lost.
    Heal,
    /// Percent of frames lost.
    Loss(u64),
    /// The operator, on a node, marks a node that is off down.
    NodeDown(usize, usize),
    /// A guest agent asks for every partner to be killed, for milliseconds.
    Flood(usize, u64),
    /// The operator kills a node that asked for it or is LEFTCLUSTER, then marks it
    /// down from another node.
    KillAndDown(usize, Option<usize>),
}

fn serving(w: &World) -> Vec<usize> {
    (0..w.nodes.len())
        .filter(|&i| w.nodes[i].serving())
        .collect()
}

fn nodes_where(w: &World, pred: impl Fn(&World, usize) -> bool) -> Vec<usize> {
    (0..w.nodes.len()).filter(|&i| pred(w, i)).collect()
}

fn other(w: &World, rng: &mut Rng, a: usize) -> usize {
    let n = w.nodes.len();
    (a + 1 + rng.below(n as u64 - 1) as usize) % n
}

/// Chooses a step for the world as it is with the scheduler's `rng`; `None` when the
/// chosen kind has no target.
pub fn choose(w: &World, rng: &mut Rng) -> Option<GuestStep> {
    let n = w.nodes.len();
    let roll = rng.below(100);
    Some(match roll {
        0..=13 => GuestStep::Wait(1000 + rng.below(5001)),
        14..=25 => {
            // A running (monitored) resource dies on a node whose agent watches it.
            let mut candidates = Vec::new();
            for i in serving(w) {
                for (a, spec) in w.specs.iter().enumerate() {
                    for (r, res) in spec.resources.iter().enumerate() {
                        if res.monitored && w.nodes[i].running[a][r] {
                            candidates.push((i, a, r));
                        }
                    }
                }
            }
            let (i, a, r) = rng.pick(&candidates)?;
            GuestStep::ResourceDies(i, a, r)
        }
        26..=35 => {
            // Mostly where the application runs or should run, where it hurts.
            let a = rng.below(w.specs.len() as u64) as usize;
            let involved = nodes_where(w, |w, i| {
                w.active(i, a) || w.placement(i, a).is_some_and(|p| p.target == Some(id(i)))
            });
            let i = match rng.pick(&involved) {
                Some(i) if rng.chance(75) => i,
                _ => rng.below(n as u64) as usize,
            };
            let r = rng.below(w.specs[a].resources.len() as u64) as usize;
            let kind = match rng.below(5) {
                0 | 1 => OpKind::Start,
                2 | 3 => OpKind::Stop,
                _ => OpKind::Check,
            };
            let broken = if rng.chance(70) {
                Broken::Fails
            } else {
                Broken::Hangs
            };
            // Now and then broken until repaired.
            let times = if rng.chance(20) {
                u32::MAX
            } else {
                1 + rng.below(2) as u32
            };
            GuestStep::BreakOp {
                at: (i, a, r),
                kind,
                broken,
                times,
            }
        }
        36..=38 => {
            let keys: Vec<_> = w.injections.keys().copied().collect();
            let (i, a, r, code) = rng.pick(&keys)?;
            let kind = [
                OpKind::Start,
                OpKind::StartStandby,
                OpKind::Stop,
                OpKind::Check,
            ][code as usize];
            GuestStep::Repair(i, a, r, kind)
        }
        39..=52 => {
            let by = rng.pick(&serving(w))?;
            let app = rng.below(w.specs.len() as u64) as usize;
            let order = match rng.below(20) {
                0..=3 => Order::Switch(Some(rng.below(n as u64) as usize)),
                4..=6 => Order::Switch(None),
                7..=9 => Order::Online,
                10..=11 => Order::Offline,
                12..=15 => Order::Clear,
                _ => Order::Maintenance(rng.chance(50)),
            };
            GuestStep::Operator(by, app, order)
        }
        53..=56 => {
            GuestStep::Crash(rng.pick(&nodes_where(w, |w, i| w.nodes[i].power != Power::Off))?)
        }
        57..=60 => {
            let i = rng.pick(&nodes_where(w, |w, i| w.nodes[i].power == Power::On))?;
            GuestStep::Hang(i, 500 + rng.below(7501))
        }
        61..=63 => GuestStep::AgentRestart(rng.pick(&serving(w))?, 200 + rng.below(3801)),
        64..=71 => {
            GuestStep::Boot(rng.pick(&nodes_where(w, |w, i| w.nodes[i].power == Power::Off))?)
        }
        72..=74 => {
            let a = rng.below(n as u64) as usize;
            GuestStep::Cut(a, other(w, rng, a))
        }
        75..=76 => {
            let a = rng.below(n as u64) as usize;
            GuestStep::CutOneWay(a, other(w, rng, a))
        }
        77..=78 => GuestStep::Isolate(rng.below(n as u64) as usize),
        79..=84 => GuestStep::Heal,
        85..=86 => GuestStep::Loss(5 + rng.below(30)),
        87..=92 => {
            // The operator marks down a node that really is off.
            let off = nodes_where(w, |w, i| w.nodes[i].power == Power::Off);
            GuestStep::NodeDown(rng.pick(&serving(w))?, rng.pick(&off)?)
        }
        93 if w.host_link => GuestStep::Flood(rng.pick(&serving(w))?, 500 + rng.below(4501)),
        _ => {
            // The operator kills a node that some node sees LEFTCLUSTER, or that a
            // HaltFlag application asked to be killed.
            let mut targets: Vec<usize> = w.kill_requests.iter().map(|k| k.1).collect();
            for i in serving(w) {
                for j in (0..n).filter(|&j| j != i) {
                    if w.node_state(i, j) == Some(GuestNodeState::LeftCluster) {
                        targets.push(j);
                    }
                }
            }
            targets.retain(|&t| w.nodes[t].power != Power::Off);
            let t = rng.pick(&targets)?;
            let by = serving(w)
                .into_iter()
                .filter(|&b| b != t)
                .collect::<Vec<_>>();
            GuestStep::KillAndDown(t, rng.pick(&by))
        }
    })
}

fn ms(v: u64) -> Duration {
    MS * v.min(u32::MAX as u64) as u32
}

/// Applies `step`; returns how long it asks the world to run (only `Wait` asks).
pub fn apply(w: &mut World, step: &GuestStep) -> Duration {
    let n = w.nodes.len();
    let fits = |i: &usize| *i < n;
    w.log(|| format!("step: {step:?}"));
    match *step {
        GuestStep::Wait(d) => return ms(d),
        GuestStep::ResourceDies(i, a, r) => {
            if fits(&i) && a < w.specs.len() && r < w.specs[a].resources.len() {
                w.resource_dies(i, a, r);
            }
        }
        GuestStep::BreakOp {
            at: (i, a, r),
            kind,
            broken,
            times,
        } => {
            if fits(&i) && a < w.specs.len() && r < w.specs[a].resources.len() {
                w.injections.insert(
                    (i, a, r, op_code(kind)),
                    Injection {
                        broken,
                        remaining: times,
                    },
                );
            }
        }
        GuestStep::Repair(i, a, r, kind) => {
            w.injections.remove(&(i, a, r, op_code(kind)));
        }
        GuestStep::Operator(by, app, order) => {
            if fits(&by) && w.nodes[by].serving() && app < w.specs.len() {
                let command = match order {
                    Order::Switch(to) => Command::Switch(to.filter(fits).map(id)),
                    Order::Online => Command::Online,
                    Order::Offline => Command::Offline,
                    Order::Clear => Command::Clear,
                    Order::Maintenance(on) => Command::Maintenance(on),
                };
                let r = w.command(by, app, command);
                w.log(|| format!("  -> {r:?}"));
            }
        }
        GuestStep::Crash(i) => {
            if fits(&i) && w.nodes[i].power != Power::Off {
                w.crash(i);
            }
        }
        GuestStep::Hang(i, d) => {
            if fits(&i) && w.nodes[i].power == Power::On {
                w.hang(i, ms(d));
            }
        }
        GuestStep::AgentRestart(i, d) => {
            if fits(&i) && w.nodes[i].serving() {
                w.restart_agent(i, ms(d));
            }
        }
        GuestStep::Boot(i) => {
            if fits(&i) && w.nodes[i].power == Power::Off && !w.held[i] {
                w.boot(i);
            }
        }
        GuestStep::Cut(a, b) => {
            w.cut.insert((a, b));
            w.cut.insert((b, a));
        }
        GuestStep::CutOneWay(a, b) => {
            w.cut.insert((a, b));
        }
        GuestStep::Isolate(a) => {
            for b in (0..n).filter(|&b| b != a) {
                w.cut.insert((a, b));
                w.cut.insert((b, a));
            }
        }
        GuestStep::Heal => {
            w.cut.clear();
            w.loss = 0;
        }
        GuestStep::Loss(p) => w.loss = p,
        GuestStep::NodeDown(by, t) => {
            // The careful operator marks down only a node that really is off.
            if fits(&by) && fits(&t) && w.nodes[by].serving() && w.nodes[t].power == Power::Off {
                let r = w.node_down(by, t);
                w.log(|| format!("  -> {r:?}"));
            }
        }
        GuestStep::Flood(i, d) => {
            if w.host_link && fits(&i) && w.nodes[i].serving() {
                w.flooding = Some((i, w.now + ms(d)));
            }
        }
        GuestStep::KillAndDown(t, by) => {
            if fits(&t) && w.nodes[t].power != Power::Off {
                w.kill_requests.retain(|k| k.1 != t);
                w.crash(t);
                if let Some(by) = by.filter(|b| fits(b) && w.nodes[*b].serving()) {
                    let r = w.node_down(by, t);
                    w.log(|| format!("  -> node down: {r:?}"));
                }
            }
        }
    }
    Duration::ZERO
}
