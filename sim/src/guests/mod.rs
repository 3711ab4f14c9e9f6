//! Seeded simulation of the guest cluster's userApplication engine on virtual time.
//!
//! Three or four guest nodes, each running the real membership machine, guest node
//! states and engine glued as the guest agent glues them; one to three applications of
//! one to three resources with random RestartLimit, PersistentFault, HaltFlag,
//! OnlinePriority and AutoSwitchOver; a resource world per node that says what really
//! runs (operations take random time and fail or hang when a step injects it). Random
//! steps crash, hang and restart nodes and agents, cut and heal links, lose frames, kill
//! resources, break operations, and play a careful operator (switch, online, offline,
//! clear, maintenance, and `node down` only for a node that really is off). In some runs
//! the hosts kill nodes on HaltFlag requests and prove crashed nodes down.
//!
//! In the runs with a host link, kill requests go through the hosts' kill gate, and a
//! step may make a guest flood them; after every tick no node was ordered killed twice
//! within the gate's memory unless it came back under a new incarnation.
//!
//! After every tick: no application runs, or is being started, on two nodes at once
//! (what really runs, not what the engines believe; a hung node's resources still run;
//! NULLDETECTOR resources aside, see [`World::watched`]). At each of the two quiet
//! periods of a run (every fault repaired, every node back, the operator clearing
//! faults and bringing stopped applications online): every engine agrees on the
//! placements, no application is left in transition or Faulted, and each AutoStartUp
//! application not in maintenance is Online on exactly one node, where its resources
//! really run, and runs nowhere else.
//!
//! The test `guest_cluster` runs it: `HV_GUEST_SIM_SEEDS=N` runs N seeds (default 300) from `HV_GUEST_SIM_FIRST` (default
//! 0), `HV_GUEST_SIM_STEPS=M` takes M random steps per seed (default 200);
//! `HV_GUEST_SIM_SEED=S` replays one seed and prints its trace.

pub mod world;

use std::collections::BTreeSet;
use std::time::Duration;

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{AppSpec, AppState, Command, OpKind, ResourceSpec};
use hvcluster_common::config::guest::SwitchTrigger;
use hvcluster_common::config::NodeId;
use hvcluster_common::kill_gate;

use world::{id, op_code, Broken, Injection, Power, Rng, World, MS, TICK};

/// Time the cluster gets to form and start its applications before the first fault.
const SETTLE: Duration = Duration::from_secs(10);
/// Time after the repairs for the engines to sort things out by themselves.
const RECOVER: Duration = Duration::from_secs(20);
/// Time after each of the operator's rounds.
const AFTER_OPERATOR: Duration = Duration::from_secs(20);

fn random_specs(rng: &mut Rng, n: usize) -> Vec<AppSpec> {
    let apps = 1 + rng.below(3) as usize;
    (0..apps)
        .map(|a| {
            let mut nodes: Vec<NodeId> = (0..n).map(id).collect();
            for k in (1..nodes.len()).rev() {
                nodes.swap(k, rng.below(k as u64 + 1) as usize);
            }
            nodes.truncate(2 + rng.below(n as u64 - 1) as usize);
            let switch_on: BTreeSet<SwitchTrigger> = [
                SwitchTrigger::HostFailure,
                SwitchTrigger::ResourceFailure,
                SwitchTrigger::ShutDown,
            ]
            .into_iter()
            .filter(|_| rng.chance(60))
            .collect();
            let count = 1 + rng.below(3) as usize;
            // A NULLDETECTOR resource is not probed: one monitored resource at least, so
            // an agent that restarts can find out whether the application runs.
            let watched = rng.below(count as u64) as usize;
            let resources = (0..count)
                .map(|r| ResourceSpec {
                    name: format!("r{r}"),
                    monitored: r == watched || rng.chance(75),
                    standby_capable: false,
                    auto_recover: rng.chance(20),
                    check_interval: rng.millis(500, 3000),
                })
                .collect();
            AppSpec {
                name: format!("app{a}"),
                nodes,
                auto_start_up: rng.chance(85),
                switch_on,
                persistent_fault: rng.chance(35),
                halt_flag: rng.chance(35),
                online_priority: rng.chance(25),
                standby_transitions: Vec::new(),
                restart_limit: rng.below(3) as u32,
                restart_window: rng.millis(5_000, 60_000),
                resources,
            }
        })
        .collect()
}

/// Runs the world for `d`, checking after every tick that nothing runs twice.
fn advance(w: &mut World, d: Duration) -> Result<(), String> {
    let end = w.now + d;
    while w.now < end {
        w.tick();
        check_safety(w)?;
    }
    Ok(())
}

/// The hosts' kill orders: a node is ordered killed again within the gate's memory only
/// once it came back under a new incarnation (its agent started again), however its
/// partners flood. (The rate limit per guest is for more targets than a simulated
/// cluster has: the gate's unit tests and scenario kill-request-flood cover it.)
fn check_kills(w: &World) -> Result<(), String> {
    let Some(&(at, _, target, incarnation)) = w.ordered.last() else {
        return Ok(());
    };
    let earlier = w.ordered[..w.ordered.len() - 1]
        .iter()
        .filter(|o| o.2 == target && at.saturating_sub(o.0) < kill_gate::DEAD_KEPT);
    for o in earlier {
        if incarnation == o.3 {
            return Err(format!(
                "g{} ordered killed twice at {:.2}s and {:.2}s, with no new incarnation \
                 ({incarnation}) between",
                id(target),
                o.0.as_secs_f64(),
                at.as_secs_f64(),
            ));
        }
    }
    Ok(())
}

fn check_safety(w: &World) -> Result<(), String> {
    check_kills(w)?;
    for app in 0..w.specs.len() {
        let holders: Vec<String> = (0..w.nodes.len())
            .filter(|&i| w.active(i, app))
            .map(|i| format!("g{} ({:?})", id(i), w.nodes[i].power))
            .collect();
        if holders.len() > 1 {
            return Err(format!(
                "{} runs or starts on {} at once at {:.2}s",
                w.specs[app].name,
                holders.join(" and "),
                w.now.as_secs_f64()
            ));
        }
    }
    Ok(())
}

fn serving(w: &World) -> Vec<usize> {
    (0..w.nodes.len())
        .filter(|&i| w.nodes[i].serving())
        .collect()
}

fn nodes_where(w: &World, pred: impl Fn(&World, usize) -> bool) -> Vec<usize> {
    (0..w.nodes.len()).filter(|&i| pred(w, i)).collect()
}

/// Takes one random step; returns how long to let the world run afterwards.
fn random_step(w: &mut World) -> Duration {
    let n = w.nodes.len();
    let after = TICK * (1 + w.rng.below(6) as u32);
    let roll = w.rng.below(100);
    match roll {
        0..=13 => {
            let d = w.rng.millis(1000, 6000);
            w.log(|| format!("step: time passes ({d:?})"));
            return d;
        }
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
            if let Some((i, a, r)) = w.rng.pick(&candidates) {
                w.log(|| format!("step: a{a}r{r} dies on g{}", id(i)));
                w.resource_dies(i, a, r);
            }
        }
        26..=35 => {
            // Mostly where the application runs or should run, where it hurts.
            let a = w.rng.below(w.specs.len() as u64) as usize;
            let involved = nodes_where(w, |w, i| {
                w.active(i, a) || w.placement(i, a).is_some_and(|p| p.target == Some(id(i)))
            });
            let i = match w.rng.pick(&involved) {
                Some(i) if w.rng.chance(75) => i,
                _ => w.rng.below(n as u64) as usize,
            };
            let r = w.rng.below(w.specs[a].resources.len() as u64) as usize;
            let kind = match w.rng.below(5) {
                0 | 1 => OpKind::Start,
                2 | 3 => OpKind::Stop,
                _ => OpKind::Check,
            };
            let broken = if w.rng.chance(70) {
                Broken::Fails
            } else {
                Broken::Hangs
            };
            // Now and then broken until repaired.
            let remaining = if w.rng.chance(20) {
                u32::MAX
            } else {
                1 + w.rng.below(2) as u32
            };
            w.log(|| {
                format!(
                    "step: {kind:?} of a{a}r{r} on g{} breaks ({broken:?} x{remaining})",
                    id(i)
                )
            });
            w.injections
                .insert((i, a, r, op_code(kind)), Injection { broken, remaining });
        }
        36..=38 => {
            let keys: Vec<_> = w.injections.keys().copied().collect();
            if let Some(key) = w.rng.pick(&keys) {
                w.log(|| format!("step: repair {key:?}"));
                w.injections.remove(&key);
            }
        }
        39..=52 => operator_command(w),
        53..=56 => {
            if let Some(i) = w
                .rng
                .pick(&nodes_where(w, |w, i| w.nodes[i].power != Power::Off))
            {
                w.log(|| format!("step: g{} crashes", id(i)));
                w.crash(i);
            }
        }
        57..=60 => {
            if let Some(i) = w
                .rng
                .pick(&nodes_where(w, |w, i| w.nodes[i].power == Power::On))
            {
                let d = w.rng.millis(500, 8000);
                w.log(|| format!("step: g{} hangs for {d:?}", id(i)));
                w.hang(i, d);
            }
        }
        61..=63 => {
            if let Some(i) = w.rng.pick(&serving(w)) {
                let d = w.rng.millis(200, 4000);
                w.log(|| format!("step: g{}'s agent restarts in {d:?}", id(i)));
                w.restart_agent(i, d);
            }
        }
        64..=71 => {
            if let Some(i) = w
                .rng
                .pick(&nodes_where(w, |w, i| w.nodes[i].power == Power::Off))
            {
                w.log(|| format!("step: g{} boots", id(i)));
                w.boot(i);
            }
        }
        72..=74 => {
            let a = w.rng.below(n as u64) as usize;
            let b = (a + 1 + w.rng.below(n as u64 - 1) as usize) % n;
            w.log(|| format!("step: cut g{} <-> g{}", id(a), id(b)));
            w.cut.insert((a, b));
            w.cut.insert((b, a));
        }
        75..=76 => {
            let a = w.rng.below(n as u64) as usize;
            let b = (a + 1 + w.rng.below(n as u64 - 1) as usize) % n;
            w.log(|| format!("step: cut g{} -> g{}", id(a), id(b)));
            w.cut.insert((a, b));
        }
        77..=78 => {
            let a = w.rng.below(n as u64) as usize;
            w.log(|| format!("step: isolate g{}", id(a)));
            for b in (0..n).filter(|&b| b != a) {
                w.cut.insert((a, b));
                w.cut.insert((b, a));
            }
        }
        79..=84 => {
            w.log(|| "step: the network heals".to_string());
            w.cut.clear();
            w.loss = 0;
        }
        85..=86 => {
            let loss = 5 + w.rng.below(30);
            w.log(|| format!("step: {loss}% of frames are lost"));
            w.loss = loss;
        }
        87..=92 => {
            // The operator marks down a node that really is off.
            let off = nodes_where(w, |w, i| w.nodes[i].power == Power::Off);
            if let (Some(t), Some(by)) = (w.rng.pick(&off), w.rng.pick(&serving(w))) {
                let r = w.node_down(by, t);
                w.log(|| format!("step: operator on g{}: node down g{}: {r:?}", id(by), id(t)));
            }
        }
        93 if w.host_link => {
            // A guest agent gone wrong asks the hosts to kill every partner, again
            // and again.
            if let Some(i) = w.rng.pick(&serving(w)) {
                let d = w.rng.millis(500, 5000);
                w.log(|| format!("step: g{} floods kill requests for {d:?}", id(i)));
                w.flooding = Some((i, w.now + d));
            }
        }
        _ => kill_and_down(w),
    }
    after
}

/// The operator kills a node that some node sees LEFTCLUSTER, or that a HaltFlag
/// application asked to be killed, then marks it down (which may be refused while its
/// last heartbeats are recent; a later step marks it down then).
fn kill_and_down(w: &mut World) {
    let n = w.nodes.len();
    let mut targets: Vec<usize> = w.kill_requests.iter().map(|k| k.1).collect();
    for i in serving(w) {
        for j in (0..n).filter(|&j| j != i) {
            if w.node_state(i, j) == Some(GuestNodeState::LeftCluster) {
                targets.push(j);
            }
        }
    }
    targets.retain(|&t| w.nodes[t].power != Power::Off);
    let Some(t) = w.rng.pick(&targets) else {
        return;
    };
    w.log(|| format!("step: operator kills g{}", id(t)));
    w.kill_requests.retain(|k| k.1 != t);
    w.crash(t);
    if let Some(by) = w.rng.pick(&serving(w)) {
        let r = w.node_down(by, t);
        w.log(|| format!("step: operator on g{}: node down g{}: {r:?}", id(by), id(t)));
    }
}

fn operator_command(w: &mut World) {
    let Some(by) = w.rng.pick(&serving(w)) else {
        return;
    };
    let app = w.rng.below(w.specs.len() as u64) as usize;
    let command = match w.rng.below(20) {
        0..=3 => Command::Switch(Some(id(w.rng.below(w.nodes.len() as u64) as usize))),
        4..=6 => Command::Switch(None),
        7..=9 => Command::Online,
        10..=11 => Command::Offline,
        12..=15 => Command::Clear,
        _ => Command::Maintenance(w.rng.chance(50)),
    };
    let shown = format!("{command:?}");
    let r = w.command(by, app, command);
    w.log(|| {
        format!(
            "step: operator on g{}: {} {shown}: {r:?}",
            id(by),
            w.specs[app].name
        )
    });
}

/// Every fault ends, the operator tidies up, then every application must have settled.
fn quiet_period(w: &mut World) -> Result<(), String> {
    w.log(|| "quiet period: every fault is repaired".to_string());
    w.restore();
    advance(w, RECOVER)?;
    restart_shunned_agents(w);
    advance(w, RECOVER)?;
    let apps = w.specs.len();
    let mut lifted = false;
    for app in 0..apps {
        let maintenance = w.placement(0, app).is_some_and(|p| p.maintenance);
        if maintenance && w.rng.chance(50) {
            let r = w.command(0, app, Command::Maintenance(false));
            w.log(|| format!("operator: maintenance off app{app}: {r:?}"));
            lifted = true;
        }
    }
    if lifted {
        // Checks find what went wrong during maintenance.
        advance(w, AFTER_OPERATOR)?;
    }
    // A HaltFlag kill on the host link may have taken a node away meanwhile.
    w.restore();
    advance(w, RECOVER)?;
    for app in 0..apps {
        let faulted = (0..w.nodes.len()).any(|i| w.app_state(i, app) == Some(AppState::Faulted));
        if faulted {
            let r = w.command(0, app, Command::Clear);
            w.log(|| format!("operator: clear app{app}: {r:?}"));
        }
    }
    advance(w, AFTER_OPERATOR)?;
    w.restore();
    advance(w, RECOVER)?;
    for app in 0..apps {
        let online = (0..w.nodes.len()).any(|i| w.app_state(i, app) == Some(AppState::Online));
        let maintenance = w.placement(0, app).is_some_and(|p| p.maintenance);
        if w.specs[app].auto_start_up && !online && !maintenance {
            let r = w.command(0, app, Command::Online);
            w.log(|| format!("operator: online app{app}: {r:?}"));
        }
    }
    advance(w, AFTER_OPERATOR)?;
    check_settled(w)
}

/// The membership layer can leave one node holding another Failed for good although
/// both run and every link works: a node whose agent started while the other was off
/// fails it as never heard (startup fencing); when the other boots, it is heard with
/// `Accepted::First`, so it must rejoin, but it does not yield, because the other
/// nodes, which knew its previous incarnation, took it back and give it the votes.
/// The engine rightly waits for a LEFTCLUSTER node; the operator's remedy is to restart
/// the shunned node's agent, whose next incarnation is then taken back. (A membership
/// issue, outside the engine; reported, not fixed here.)
fn restart_shunned_agents(w: &mut World) {
    let mut shunned = BTreeSet::new();
    for i in serving(w) {
        for j in serving(w) {
            if i != j && w.node_state(i, j) != Some(GuestNodeState::Up) {
                w.log(|| {
                    format!(
                        "operator: g{} holds g{} {:?} though both run and the network works",
                        id(i),
                        id(j),
                        w.node_state(i, j)
                    )
                });
                shunned.insert(j);
            }
        }
    }
    for j in shunned {
        w.log(|| format!("operator: restarts g{}'s agent", id(j)));
        w.restart_agent(j, 500 * MS);
    }
}

fn check_settled(w: &World) -> Result<(), String> {
    let n = w.nodes.len();
    for (app, spec) in w.specs.iter().enumerate() {
        let name = &spec.name;
        let placements: Vec<_> = (0..n).filter_map(|i| w.placement(i, app)).collect();
        if placements.len() != n || placements.iter().any(|p| *p != placements[0]) {
            return Err(format!(
                "the nodes disagree on {name}'s placement: {placements:?}"
            ));
        }
        if placements[0].maintenance {
            continue;
        }
        let states: Vec<Option<AppState>> = (0..n).map(|i| w.app_state(i, app)).collect();
        let settled = states
            .iter()
            .all(|s| matches!(s, Some(AppState::Online | AppState::Offline)));
        if !settled {
            let views: Vec<String> = (0..n).map(|i| w.describe(i, app)).collect();
            return Err(format!(
                "{name} has not settled after the quiet period: {states:?}\n  {}",
                views.join("\n  ")
            ));
        }
        let online: Vec<usize> = (0..n)
            .filter(|&i| states[i] == Some(AppState::Online))
            .collect();
        if spec.auto_start_up && online.len() != 1 {
            return Err(format!(
                "{name} (AutoStartUp) is Online on {} node(s) after the quiet period: {states:?} \
                 (placement {:?})",
                online.len(),
                placements[0]
            ));
        }
        for (i, state) in states.iter().enumerate() {
            let running = w.watched(i, app);
            let ok = if online.contains(&i) {
                running.iter().all(|&r| r)
            } else {
                running.iter().all(|&r| !r)
            };
            if !ok || w.busy(i, app) {
                return Err(format!(
                    "{name} is {state:?} on g{} but its checked resources really are {running:?}",
                    id(i)
                ));
            }
        }
    }
    Ok(())
}

/// Runs one seeded schedule of `steps` random steps; `verbose` prints its trace.
pub fn run_seed(seed: u64, steps: usize, verbose: bool) -> Result<(), String> {
    let mut rng = Rng(seed);
    let n = 3 + rng.below(2) as usize;
    let specs = random_specs(&mut rng, n);
    let host_link = rng.chance(50);
    if verbose {
        println!("{n} nodes, host link {host_link}");
        for s in &specs {
            println!("{s:?}");
        }
    }
    let mut w = World::new(n, specs, host_link, rng, verbose);
    advance(&mut w, SETTLE)?;
    // Two rounds of faults, each followed by a quiet period.
    for _ in 0..2 {
        for _ in 0..steps / 2 {
            let d = random_step(&mut w);
            check_safety(&w)?;
            advance(&mut w, d)?;
        }
        quiet_period(&mut w)?;
    }
    Ok(())
}
