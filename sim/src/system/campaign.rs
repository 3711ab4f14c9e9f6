//! Many schedules at once, on every core: what `hvlab sim` and CI run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::run::{explore, shrink, Outcome, Params};

/// What a campaign found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Steps taken in all.
    pub steps: u64,
    /// Failures that are not known findings, each shrunk.
    pub failures: Vec<(Outcome, Outcome)>,
    /// Failures that are known findings ([`super::KNOWN`]): (seed, failure).
    pub known: Vec<(u64, String)>,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

impl Summary {
    /// Schedules per second of wall-clock time.
    pub fn per_second(&self) -> f64 {
        self.schedules as f64 / self.elapsed_s.max(1e-9)
    }
}

/// Runs `count` schedules, seeds `base..base + count`, sized by `params_for(seed)`, on
/// `threads` threads; stops early after the first new failure when `stop_at_first`.
/// Every new failure is shrunk (at most `shrink_budget` replays).
pub fn campaign(
    base: u64,
    count: u64,
    params_for: &(dyn Fn(u64) -> Params + Sync),
    threads: usize,
    stop_at_first: bool,
    shrink_budget: usize,
) -> Summary {
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let threads = threads.max(1) as u64;
    let parts: Vec<Summary> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let mut part = Summary::default();
                    let mut i = t;
                    while i < count && !stop.load(Ordering::Relaxed) {
                        let seed = base.wrapping_add(i);
                        i += threads;
                        let out = explore(seed, &params_for(seed), false);
                        part.schedules += 1;
                        part.steps += out.schedule.steps.len() as u64;
                        let Some(failure) = out.failure.clone() else {
                            continue;
                        };
                        if super::known(&failure).is_some() {
                            part.known.push((seed, failure));
                            continue;
                        }
                        let small = shrink(&out, shrink_budget);
                        part.failures.push((out, small));
                        if stop_at_first {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a campaign thread"))
            .collect()
    });
    let mut all = Summary::default();
    for p in parts {
        all.schedules += p.schedules;
        all.steps += p.steps;
        all.failures.extend(p.failures);
        all.known.extend(p.known);
    }
    all.failures.sort_by_key(|f| f.0.schedule.seed);
    all.known.sort();
    all.elapsed_s = started.elapsed().as_secs_f64();
    all
}

/// The sizes CI and `hvlab sim` cycle through unless told: 2 to 4 hosts, 3 or 4 guest
/// nodes, 40 steps.
pub fn cycled(seed: u64) -> Params {
    Params {
        hosts: 2 + (seed % 3) as usize,
        guests: 3 + (seed / 3 % 2) as usize,
        ..Params::default()
    }
}
