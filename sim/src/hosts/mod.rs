//! Seeded simulation of the host cluster cores (membership, quorum, fencing) on virtual
//! time, with random crashes, hangs, isolations, one-way cuts, message loss and broken
//! fence devices. After every step it checks:
//!
//! 1. no host is fenced by a partition without quorum;
//! 2. no host is DOWN (power-off proof) unless it really was powered off by a fence;
//! 3. in a two-node cluster at most one side is fenced;
//! 4. once the faults end and fencing works, every host that is off is DOWN on every
//!    running host, whenever the running hosts can hold quorum.
//!
//! The test `host_cluster` runs it: `HV_SIM_SEEDS=N` runs N seeds (default 1000);
//! `HV_SIM_SEED=S` replays one seed and prints its trace. The whole-system world
//! ([`crate::system`]) drives the same cores together with the guests.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hvcluster_common::fencing::{
    FenceAction, FenceEvent, Fencing, FencingConfig, LevelKind, Proof, View,
};
use hvcluster_common::membership::{Action, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::Accepted;

use crate::rng::Rng;

const MS: Duration = Duration::from_millis(1);
const STEP: Duration = Duration::from_millis(10);
const FAULT_PHASE: Duration = Duration::from_millis(8000);
const END: Duration = Duration::from_millis(40_000);
const RACE_DELAY: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash(usize),
    Hang(usize, Duration),
    Isolate(usize, Duration),
    OneWay(usize, usize, Duration),
    Loss(u64, Duration),
    BreakDevice(usize, Duration),
}

struct Node {
    m: Membership,
    f: Fencing,
    powered: bool,
    fenced_off: bool,
    frozen_until: Option<Duration>,
    known_inc: BTreeMap<usize, u64>,
    inbox: Vec<(usize, usize, bool)>,
}

struct InFlight {
    done_at: Duration,
    by: usize,
    target: usize,
    level: usize,
}

struct World {
    n: usize,
    now: Duration,
    nodes: Vec<Node>,
    cut: HashSet<(usize, usize)>,
    cut_until: Vec<((usize, usize), Duration)>,
    loss: u64,
    loss_until: Duration,
    broken_until: Vec<Duration>,
    flights: Vec<InFlight>,
    rng: Rng,
    trace: Vec<String>,
    verbose: bool,
}

fn membership_cfg(me: u32, n: u32) -> MembershipConfig {
    MembershipConfig {
        me,
        hosts: (1..=n).map(|i| (i, format!("h{i}"), 1)).collect(),
        interconnects: 1,
        interval: 100 * MS,
        suspect_after: 300 * MS,
        dead_after: 600 * MS,
        hung_limit: 600 * MS,
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: n,
            two_node: n == 2,
            wait_for_all: n == 2,
        },
        digest: [1; 16],
    }
}

fn fencing_cfg(me: u32, n: u32, levels: usize) -> FencingConfig {
    let lv: Vec<LevelKind> = (0..levels)
        .map(|l| LevelKind::Agents(vec![format!("dev{l}")]))
        .collect();
    FencingConfig {
        me,
        levels: (1..=n).map(|i| (i, lv.clone())).collect(),
        priority: (1..=n)
            .map(|i| (i, (1, std::cmp::Reverse(format!("h{i}")))))
            .collect(),
        two_node: n == 2,
        race_delay: RACE_DELAY,
        retry_backoff: 500 * MS,
        max_backoff: 4000 * MS,
    }
}

impl World {
    fn new(seed: u64, verbose: bool) -> (World, Vec<(Duration, Fault)>) {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(3) as usize; // 2..=4 hosts
        let levels = 1 + rng.below(2) as usize;
        let nodes = (0..n)
            .map(|i| Node {
                m: Membership::new(
                    membership_cfg(i as u32 + 1, n as u32),
                    1000 * (i as u64 + 1),
                    Duration::ZERO,
                ),
                f: Fencing::new(fencing_cfg(i as u32 + 1, n as u32, levels)),
                powered: true,
                fenced_off: false,
                frozen_until: None,
                known_inc: BTreeMap::new(),
                inbox: Vec::new(),
            })
            .collect();
        let mut faults = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let at = 1500 * MS + MS * rng.below(FAULT_PHASE.as_millis() as u64 - 2000) as u32;
            let dur = MS * (200 + rng.below(3000)) as u32;
            let a = rng.below(n as u64) as usize;
            let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
            let fault = match rng.below(6) {
                0 => Fault::Crash(a),
                1 => Fault::Hang(a, dur),
                2 => Fault::Isolate(a, dur),
                3 => Fault::OneWay(a, b, dur),
                4 => Fault::Loss(10 + rng.below(50), dur),
                _ => Fault::BreakDevice(a, dur),
            };
            faults.push((at, fault));
        }
        faults.sort_by_key(|f| f.0);
        let world = World {
            n,
            now: Duration::ZERO,
            nodes,
            cut: HashSet::new(),
            cut_until: Vec::new(),
            loss: 0,
            loss_until: Duration::ZERO,
            broken_until: vec![Duration::ZERO; n],
            flights: Vec::new(),
            rng,
            trace: Vec::new(),
            verbose,
        };
        (world, faults)
    }

    fn log(&mut self, s: String) {
        if self.verbose {
            println!("{:>7.2}s {s}", self.now.as_secs_f64());
        }
        self.trace.push(s);
    }

    fn runs(&self, i: usize) -> bool {
        self.nodes[i].powered && self.nodes[i].frozen_until.is_none_or(|t| self.now >= t)
    }

    fn apply(&mut self, fault: Fault) {
        self.log(format!("fault {fault:?}"));
        match fault {
            Fault::Crash(a) => self.nodes[a].powered = false,
            Fault::Hang(a, d) => self.nodes[a].frozen_until = Some(self.now + d),
            Fault::Isolate(a, d) => {
                for b in 0..self.n {
                    if a != b {
                        self.cut_until.push(((a, b), self.now + d));
                        self.cut_until.push(((b, a), self.now + d));
                    }
                }
            }
            Fault::OneWay(a, b, d) => self.cut_until.push(((a, b), self.now + d)),
            Fault::Loss(p, d) => {
                self.loss = p;
                self.loss_until = self.now + d;
            }
            Fault::BreakDevice(a, d) => self.broken_until[a] = self.now + d,
        }
    }

    fn end_faults(&mut self) {
        self.cut_until.clear();
        self.loss = 0;
        self.broken_until = vec![Duration::ZERO; self.n];
        for node in &mut self.nodes {
            node.frozen_until = None;
        }
    }

    fn deliver_heartbeats(&mut self, from: usize) -> Result<(), String> {
        let hb = self.nodes[from].m.heartbeat(0);
        let inc = self.nodes[from].m.incarnation();
        let downs = self.nodes[from].f.down_records();
        for to in 0..self.n {
            if to == from
                || !self.runs(to)
                || self.cut.contains(&(from, to))
                || self.rng.chance(self.loss)
            {
                continue;
            }
            let accepted = match self.nodes[to].known_inc.insert(from, inc) {
                None => Accepted::First,
                Some(prev) if prev < inc => Accepted::NewIncarnation { previous: prev },
                _ => Accepted::Same,
            };
            let now = self.now;
            let actions = self.nodes[to]
                .m
                .on_heartbeat(now, from as u32 + 1, inc, accepted, &hb);
            self.membership_actions(to, actions)?;
            let node = &mut self.nodes[to];
            let acts = node.f.on_peer_downs(&downs, &node.m, now);
            self.fence_actions(to, acts)?;
        }
        Ok(())
    }

    fn membership_actions(&mut self, i: usize, actions: Vec<Action>) -> Result<(), String> {
        for a in actions {
            match a {
                Action::SendHeartbeats => self.deliver_heartbeats(i)?,
                Action::Rejoin => {
                    let inc = self.nodes[i].m.incarnation() + 1;
                    let now = self.now;
                    let more = self.nodes[i].m.rejoin(now, inc);
                    self.membership_actions(i, more)?;
                }
                Action::Event(e) => self.log(format!("h{} {e:?}", i + 1)),
            }
        }
        Ok(())
    }

    fn fence_actions(&mut self, i: usize, actions: Vec<FenceAction>) -> Result<(), String> {
        for a in actions {
            match a {
                FenceAction::RunLevel { target, level, .. } => {
                    // Invariant 1.
                    if !self.nodes[i].m.quorum().quorate {
                        return Err(format!("h{} fences h{target} without quorum", i + 1));
                    }
                    let took = MS * (20 + self.rng.below(550)) as u32;
                    self.log(format!(
                        "h{} runs level {} against h{target} ({took:?})",
                        i + 1,
                        level + 1
                    ));
                    self.flights.push(InFlight {
                        done_at: self.now + took,
                        by: i,
                        target: target as usize - 1,
                        level,
                    });
                }
                FenceAction::Event(e) => {
                    if let FenceEvent::Down(r) = &e {
                        // Invariant 2.
                        let t = r.target as usize - 1;
                        if matches!(r.proof, Proof::PowerOff { .. }) && !self.nodes[t].fenced_off {
                            return Err(format!(
                                "h{} marks h{} DOWN but it was never powered off",
                                i + 1,
                                t + 1
                            ));
                        }
                    }
                    self.log(format!("h{} {e:?}", i + 1));
                }
                FenceAction::JournalDown(r) => {
                    // The simulated disk writes at once.
                    let now = self.now;
                    let more = self.nodes[i].f.on_journaled(now, &r, Ok(()));
                    self.fence_actions(i, more)?;
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.now += STEP;
        let now = self.now;
        self.cut = self
            .cut_until
            .iter()
            .filter(|(_, until)| now < *until)
            .map(|(p, _)| *p)
            .collect();
        if now >= self.loss_until {
            self.loss = 0;
        }
        // Fence operations complete: the BMC acts even if its requester died meanwhile.
        let (done, pending): (Vec<_>, Vec<_>) =
            self.flights.drain(..).partition(|f| f.done_at <= now);
        self.flights = pending;
        for fl in done {
            let works = now >= self.broken_until[fl.target];
            if works && (self.nodes[fl.target].powered || !self.nodes[fl.target].fenced_off) {
                self.nodes[fl.target].powered = false;
                self.nodes[fl.target].fenced_off = true;
                self.log(format!(
                    "h{} is powered off by h{}'s fence",
                    fl.target + 1,
                    fl.by + 1
                ));
            }
            self.nodes[fl.by].inbox.push((fl.target, fl.level, works));
        }
        if self.n == 2 && self.nodes.iter().all(|n| n.fenced_off) {
            return Err("both hosts of a two-node cluster were fenced".into());
        }
        for i in 0..self.n {
            if !self.runs(i) {
                continue;
            }
            let actions = self.nodes[i].m.tick(now);
            self.membership_actions(i, actions)?;
            for (t, level, ok) in std::mem::take(&mut self.nodes[i].inbox) {
                let acts =
                    self.nodes[i]
                        .f
                        .on_level_result(now, t as u32 + 1, level, ok, "sim".into());
                self.fence_actions(i, acts)?;
            }
            let view = View::of(&self.nodes[i].m, now);
            let acts = self.nodes[i].f.tick(now, &view);
            self.fence_actions(i, acts)?;
        }
        Ok(())
    }

    fn check_final(&self) -> Result<(), String> {
        // Without a quorate set of survivors nobody may fence: nothing to expect.
        let running = self.nodes.iter().filter(|n| n.powered).count();
        if !(running * 2 > self.n || (self.n == 2 && running == 1)) {
            return Ok(());
        }
        for t in 0..self.n {
            if self.nodes[t].powered {
                continue;
            }
            for o in 0..self.n {
                if self.nodes[o].powered && self.nodes[o].f.down(t as u32 + 1).is_none() {
                    return Err(format!(
                        "h{} is off but h{} never saw it DOWN",
                        t + 1,
                        o + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Runs one seeded schedule; `verbose` prints its trace.
pub fn run_seed(seed: u64, verbose: bool) -> Result<(), String> {
    let (mut w, faults) = World::new(seed, verbose);
    let mut faults = faults.into_iter().peekable();
    let mut ended = false;
    while w.now < END {
        while faults.peek().is_some_and(|(at, _)| *at <= w.now) {
            let (_, f) = faults.next().expect("peeked");
            w.apply(f);
        }
        if !ended && w.now >= FAULT_PHASE {
            ended = true;
            w.log("faults end".into());
            w.end_faults();
        }
        w.step()?;
    }
    w.check_final()
}
