//! Running a schedule: settle, the steps, then the heal and the liveness checks;
//! replaying and shrinking.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::host_agent::HostSettings;
use super::hosts::Device;
use super::step::{self, Step};
use super::world::{hid, SystemWorld};
use crate::guests::world::{World as GuestWorld, TICK};
use crate::guests::{check_safety, quiet_period, random_specs, Driver, SETTLE};
use crate::rng::Rng;

/// A rule deliberately broken in the world (never in the cores), to prove that the
/// checker catches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flaw {
    /// None: the real cores as they are.
    #[default]
    None,
    /// Every host agent's quorum rule takes one vote for a majority, so fencing sees a
    /// quorate view always (the checker judges with the true rule).
    FenceWithoutQuorum,
    /// The kill gate forgets every order at once.
    ForgetfulGate,
}

/// The size of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Hosts (2 or more).
    pub hosts: usize,
    /// Guest nodes of the guest cluster (2 or more).
    pub guests: usize,
    /// Steps the scheduler takes.
    pub steps: usize,
    /// A deliberate flaw, for the checker's own test.
    #[serde(default)]
    pub flaw: Flaw,
}

/// A schedule that replays: the seed, the sizes, and the steps taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The seed of everything the world decides (network, timings, applications).
    pub seed: u64,
    /// Hosts.
    pub hosts: usize,
    /// Guest nodes.
    pub guests: usize,
    /// A deliberate flaw, if any.
    #[serde(default)]
    pub flaw: Flaw,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The text that replays it (`hvlab sim --replay`): JSON, one step a line.
    pub fn to_text(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| serde_json::to_string(s).expect("a step serialises"))
            .collect();
        format!(
            "{{\"seed\": {}, \"hosts\": {}, \"guests\": {}, \"flaw\": {}, \"steps\": [\n  {}\n]}}",
            self.seed,
            self.hosts,
            self.guests,
            serde_json::to_string(&self.flaw).expect("a flaw serialises"),
            steps.join(",\n  ")
        )
    }

    /// Reads a text written by [`Schedule::to_text`].
    pub fn from_text(text: &str) -> Result<Schedule, String> {
        serde_json::from_str(text).map_err(|e| {
            format!("not a schedule ({e}): expected the JSON `hvlab sim` prints after a failure")
        })
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The schedule as run (the steps chosen, or replayed).
    pub schedule: Schedule,
    /// The first rule broken, if any.
    pub failure: Option<String>,
    /// Ticks of world time run.
    pub ticks: u64,
}

/// How long after the heal before the hosts must have settled.
const HEAL: Duration = Duration::from_secs(12);
/// Each round of the guests' quiet period.
const ROUND: Duration = Duration::from_secs(10);

struct Runner {
    w: SystemWorld,
    ticks: u64,
}

impl Driver for Runner {
    fn guests(&mut self) -> &mut GuestWorld {
        &mut self.w.guests
    }

    fn advance(&mut self, d: Duration) -> Result<(), String> {
        let end = self.w.now + d.max(TICK);
        while self.w.now < end {
            self.w.tick();
            self.ticks += 1;
            if let Some(f) = &self.w.failure {
                return Err(f.clone());
            }
            check_safety(&self.w.guests)?;
        }
        Ok(())
    }

    fn restore(&mut self) {
        heal(&mut self.w);
        self.w.guests.restore();
    }

    fn round(&self) -> Duration {
        ROUND
    }
}

/// Every host fault ends (a BMC that died with its host stays dead while it is off).
fn heal(w: &mut SystemWorld) {
    w.net.heal();
    let now = w.now;
    for h in 0..w.hosts.len() {
        let host = &mut w.hosts[h];
        host.frozen_until = Duration::ZERO;
        host.slow_until = Duration::ZERO;
        host.disk.fsync_fails = 0;
        host.disk.full_until = Duration::ZERO;
        host.disk.torn_next = false;
        if matches!(host.device, Device::Fails | Device::Hangs) {
            host.device = Device::Works;
        }
        if host.agent_back_at.is_some() {
            host.agent_back_at = Some(now);
        }
    }
}

fn build(schedule: &Schedule, verbose: bool) -> SystemWorld {
    let mut rng = Rng(schedule.seed);
    let n = schedule.guests.max(2);
    let specs = random_specs(&mut rng, n);
    let settings = HostSettings {
        hosts: schedule.hosts.max(2),
        guests: n,
        kdump_level: rng.chance(50),
        fence_without_quorum: schedule.flaw == Flaw::FenceWithoutQuorum,
    };
    if verbose {
        println!(
            "{} hosts (kdump level {}), {n} guest nodes",
            settings.hosts, settings.kdump_level
        );
        for s in &specs {
            println!("{s:?}");
        }
    }
    let mut guests = GuestWorld::new(n, specs, true, Rng(rng.next_u64()), verbose);
    guests.forgetful_gate = schedule.flaw == Flaw::ForgetfulGate;
    SystemWorld::new(settings, guests, Rng(rng.next_u64()))
}

fn run(schedule: Schedule, params_steps: Option<usize>, verbose: bool) -> Outcome {
    let mut r = Runner {
        w: build(&schedule, verbose),
        ticks: 0,
    };
    let mut scheduler = Rng(schedule.seed ^ 0x5EED_0F5C_4ED0_1E00);
    let script = schedule.steps.clone();
    let count = params_steps.unwrap_or(script.len());
    let mut taken = Vec::with_capacity(count);
    let mut result = r.advance(SETTLE);
    for k in 0..count {
        if result.is_err() {
            break;
        }
        let s = match script.get(k) {
            Some(s) if params_steps.is_none() => s.clone(),
            _ => step::choose(&r.w, &mut scheduler),
        };
        let d = step::apply(&mut r.w, &s);
        taken.push(s);
        result = r.advance(d);
    }
    if result.is_ok() {
        result = settle(&mut r);
    }
    Outcome {
        schedule: Schedule {
            steps: taken,
            ..schedule
        },
        failure: result.err(),
        ticks: r.ticks,
    }
}

/// Every fault heals; then the hosts, the domains and the guest cluster must settle.
fn settle(r: &mut Runner) -> Result<(), String> {
    r.w.log(|| "heal: every fault ends".into());
    r.restore();
    r.advance(HEAL)?;
    restart_shunned_hosts(r);
    // The operator confirms down the hosts that are off and not DOWN yet (a BMC that
    // died with its host can prove nothing).
    let n = r.w.hosts.len();
    if let Some(by) = (0..n).find(|&h| r.w.hosts[h].agent.is_some()) {
        let off: Vec<usize> = (0..n).filter(|&t| !r.w.hosts[t].powered).collect();
        for t in off {
            r.w.last_refusal = None;
            r.w.confirm_down(by, hid(t));
            let refusal = r.w.last_refusal.take();
            if let Some(why) = refusal.filter(|why| why.contains("heard alive")) {
                return Err(format!(
                    "the operator cannot confirm down h{}, off since the heal, on h{}: {why}",
                    hid(t),
                    hid(by)
                ));
            }
        }
    }
    r.advance(HEAL)?;
    check_hosts_settled(&r.w)?;
    // The hosts that are off boot; a domain lost on a host that came back before it was
    // DOWN is started again by the operator.
    for h in 0..n {
        r.w.boot(h);
    }
    for g in 0..r.w.lost.len() {
        if r.w.lost[g].is_some_and(|(x, _)| r.w.hosts[x].powered) {
            r.w.log(|| format!("operator starts g{}'s domain again", g + 1));
            r.w.lost[g] = None;
            r.w.guests.held[g] = false;
        }
    }
    quiet_period(r)
}

/// Membership can leave a running host holding another Failed for good, although both
/// run and every link works (heard again, it must rejoin, but nothing makes it: see
/// `crate::guests`); the operator's remedy is to restart the shunned host's agent.
fn restart_shunned_hosts(r: &mut Runner) {
    let n = r.w.hosts.len();
    let running: Vec<usize> = (0..n).filter(|&h| r.w.hosts[h].agent.is_some()).collect();
    let mut shunned = Vec::new();
    for &a in &running {
        for &b in &running {
            let held = r.w.hosts[a]
                .agent
                .as_ref()
                .is_some_and(|x| x.failed(hid(b)));
            if a != b && held && !shunned.contains(&b) {
                shunned.push(b);
            }
        }
    }
    for b in shunned {
        r.w.log(|| {
            format!(
                "operator: h{} is held Failed though it runs: restarts its agent",
                hid(b)
            )
        });
        r.w.stop_agent(b, Some(Duration::from_millis(500)));
    }
}

/// Liveness of the hosts: when every running host is quorate, every host that is off
/// is DOWN on every running host and none of its domains is left lost.
fn check_hosts_settled(w: &SystemWorld) -> Result<(), String> {
    let n = w.hosts.len();
    // Nothing is expected of a partition without quorum (a two-node survivor whose
    // agent restarted waits for all, as it should).
    let running: Vec<usize> = (0..n).filter(|&h| w.hosts[h].powered).collect();
    let quorate = running
        .iter()
        .all(|&h| w.hosts[h].agent.as_ref().is_some_and(|a| a.quorate()));
    if running.is_empty() || !quorate {
        return Ok(());
    }
    for t in (0..n).filter(|&t| !w.hosts[t].powered) {
        for o in (0..n).filter(|&o| w.hosts[o].powered) {
            let Some(agent) = &w.hosts[o].agent else {
                continue;
            };
            if agent.down(hid(t)).is_none() {
                return Err(format!(
                    "h{} is off but h{} does not hold it DOWN after the heal",
                    hid(t),
                    hid(o)
                ));
            }
        }
    }
    for (g, lost) in w.lost.iter().enumerate() {
        if let Some((x, _)) = lost {
            if !w.hosts[*x].powered {
                return Err(format!(
                    "g{}'s domain died with h{} and was not restarted elsewhere after the heal",
                    g + 1,
                    hid(*x)
                ));
            }
        }
    }
    Ok(())
}

/// Runs a new schedule: the scheduler chooses `params.steps` steps from `seed`.
pub fn explore(seed: u64, params: &Params, verbose: bool) -> Outcome {
    let schedule = Schedule {
        seed,
        hosts: params.hosts,
        guests: params.guests,
        flaw: params.flaw,
        steps: Vec::new(),
    };
    run(schedule, Some(params.steps), verbose)
}

/// Replays a recorded schedule.
pub fn replay(schedule: &Schedule, verbose: bool) -> Outcome {
    run(schedule.clone(), None, verbose)
}

/// The kind of a failure: its message without numbers and details, so that shrinking
/// keeps the same broken rule.
fn kind(failure: &str) -> String {
    let plain: String = failure.chars().filter(|c| !c.is_ascii_digit()).collect();
    let end = plain.find(['(', '[', ':']).unwrap_or(plain.len());
    plain[..end].trim().to_string()
}

/// Shrinks a failing schedule: drops runs of steps, then single steps, while it still
/// fails the same way; returns the smallest failing outcome found (at most `budget`
/// replays).
pub fn shrink(failing: &Outcome, budget: usize) -> Outcome {
    let mut best = failing.clone();
    let want = failing.failure.as_deref().map(kind);
    let mut tries = 0;
    let mut chunk = best.schedule.steps.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.schedule.steps.len() && tries < budget {
            let mut candidate = best.schedule.clone();
            let end = (i + chunk).min(candidate.steps.len());
            candidate.steps.drain(i..end);
            tries += 1;
            let out = replay(&candidate, false);
            if out.failure.is_some() && out.failure.as_deref().map(kind) == want {
                best = out;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 || tries >= budget {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    best
}

/// The default sizes: 3 hosts, 3 guest nodes, 40 steps.
impl Default for Params {
    fn default() -> Self {
        Params {
            hosts: 3,
            guests: 3,
            steps: 40,
            flaw: Flaw::None,
        }
    }
}
