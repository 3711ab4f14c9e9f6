//! Seeded simulation of the guest cluster's userApplication engine on virtual time.
//!
//! Three or four guest nodes, each running the real guest agent core
//! ([`hvcluster_common::guest::GuestCore`]) driven as the guest agent drives it; one to three applications of
//! one to three resources with random RestartLimit, PersistentFault, HaltFlag,
//! OnlinePriority and AutoSwitchOver; a resource world per node that says what really
//! runs (operations take random time and fail or hang when a step injects it). Random
//! steps crash, hang and restart nodes and agents, cut and heal links, lose frames, kill
//! resources, break operations, and play a careful operator (switch, online, offline,
//! clear, maintenance, and `node down` only for a node that really is off). In some runs
//! the hosts kill nodes on the guests' requests (silent partners, HaltFlag) and tell
//! them which crashed nodes are down (host-down notices).
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

pub mod steps;
pub mod world;

use std::collections::BTreeSet;
use std::time::Duration;

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{AppSpec, AppState, Command, ResourceSpec};
use hvcluster_common::config::guest::SwitchTrigger;
use hvcluster_common::config::NodeId;
use hvcluster_common::kill_gate;

use world::{id, Rng, World, MS, TICK};

/// Time the cluster gets to form and start its applications before the first fault.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Time after the repairs, and after each of the operator's rounds, for the engines to
/// sort things out by themselves.
pub const RECOVER: Duration = Duration::from_secs(20);

pub fn random_specs(rng: &mut Rng, n: usize) -> Vec<AppSpec> {
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
pub fn advance(w: &mut World, d: Duration) -> Result<(), String> {
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
pub fn check_kills(w: &World) -> Result<(), String> {
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

pub fn check_safety(w: &World) -> Result<(), String> {
    if let Some(e) = w.wire_errors.first() {
        return Err(e.clone());
    }
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

pub fn serving(w: &World) -> Vec<usize> {
    (0..w.nodes.len())
        .filter(|&i| w.nodes[i].serving())
        .collect()
}

/// What runs a guest cluster through its quiet periods: the guest world alone, or the
/// whole system around it.
pub trait Driver {
    /// The guest cluster.
    fn guests(&mut self) -> &mut World;
    /// Runs for `d`, checking every safety rule after every tick.
    fn advance(&mut self, d: Duration) -> Result<(), String>;
    /// Every fault ends; every node that can run runs.
    fn restore(&mut self);
    /// How long each round of the quiet period lets the cluster sort things out.
    fn round(&self) -> Duration {
        RECOVER
    }
}

impl Driver for World {
    fn guests(&mut self) -> &mut World {
        self
    }
    fn advance(&mut self, d: Duration) -> Result<(), String> {
        advance(self, d)
    }
    fn restore(&mut self) {
        World::restore(self)
    }
}

/// Every fault ends, the operator tidies up, then every application must have settled.
pub fn quiet_period<D: Driver>(d: &mut D) -> Result<(), String> {
    d.guests()
        .log(|| "quiet period: every fault is repaired".to_string());
    let round = d.round();
    d.restore();
    d.advance(round)?;
    restart_shunned_agents(d.guests());
    d.advance(round)?;
    let apps = d.guests().specs.len();
    let mut lifted = false;
    for app in 0..apps {
        let w = d.guests();
        let Some(&op) = serving(w).first() else {
            continue;
        };
        let maintenance = w.placement(op, app).is_some_and(|p| p.maintenance);
        if maintenance && w.rng.chance(50) {
            let r = w.command(op, app, Command::Maintenance(false));
            w.log(|| format!("operator: maintenance off app{app}: {r:?}"));
            lifted = true;
        }
    }
    if lifted {
        // Checks find what went wrong during maintenance.
        d.advance(round)?;
    }
    // A HaltFlag kill on the host link may have taken a node away meanwhile.
    d.restore();
    d.advance(round)?;
    for app in 0..apps {
        let w = d.guests();
        let Some(&op) = serving(w).first() else {
            continue;
        };
        let faulted = (0..w.nodes.len()).any(|i| w.app_state(i, app) == Some(AppState::Faulted));
        if faulted {
            let r = w.command(op, app, Command::Clear);
            w.log(|| format!("operator: clear app{app}: {r:?}"));
        }
    }
    d.advance(round)?;
    d.restore();
    d.advance(round)?;
    for app in 0..apps {
        let w = d.guests();
        let Some(&op) = serving(w).first() else {
            continue;
        };
        let online = (0..w.nodes.len()).any(|i| w.app_state(i, app) == Some(AppState::Online));
        let maintenance = w.placement(op, app).is_some_and(|p| p.maintenance);
        if w.specs[app].auto_start_up && !online && !maintenance {
            let r = w.command(op, app, Command::Online);
            w.log(|| format!("operator: online app{app}: {r:?}"));
        }
    }
    d.advance(round)?;
    check_settled(d.guests())
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

pub fn check_settled(w: &World) -> Result<(), String> {
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
            let after = TICK * (1 + w.rng.below(6) as u32);
            let mut rng = std::mem::replace(&mut w.rng, Rng(0));
            let chosen = steps::choose(&w, &mut rng);
            w.rng = rng;
            let waited = match chosen {
                Some(step) => steps::apply(&mut w, &step),
                None => Duration::ZERO,
            };
            let d = if waited.is_zero() { after } else { waited };
            check_safety(&w)?;
            advance(&mut w, d)?;
        }
        quiet_period(&mut w)?;
    }
    Ok(())
}
