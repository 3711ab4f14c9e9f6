//! The whole-system simulation in CI: thousands of schedules of hosts and guests, every
//! safety rule after every tick, liveness after the heal; and proof that the checker
//! catches a broken rule and shrinks the schedule that broke it.
//!
//! `HV_SYSTEM_SIM_SCHEDULES=N` runs N schedules (default 2000) from `HV_SYSTEM_SIM_SEED`
//! (default 0); `hvlab sim` runs any number from a random seed and replays failures.

use hvcluster_sim::system::campaign::{campaign, cycled};
use hvcluster_sim::system::{explore, replay, shrink, Flaw, Params, Schedule};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[test]
fn whole_system_schedules_hold_every_invariant() {
    let schedules: u64 = env("HV_SYSTEM_SIM_SCHEDULES").unwrap_or(2000);
    let first: u64 = env("HV_SYSTEM_SIM_SEED").unwrap_or(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let summary = campaign(first, schedules, &cycled, threads, false, 200);
    println!(
        "{} whole-system schedules, {} steps, {} failures, {} known findings, {:.1}s ({:.1} \
         schedules/s)",
        summary.schedules,
        summary.steps,
        summary.failures.len(),
        summary.known.len(),
        summary.elapsed_s,
        summary.per_second()
    );
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|(first, small)| {
            format!(
                "seed {}: {}\nshrunk to {} steps ({}); replay with `hvlab sim --replay FILE`:\n{}",
                first.schedule.seed,
                first.failure.as_deref().unwrap_or_default(),
                small.schedule.steps.len(),
                small.failure.as_deref().unwrap_or_default(),
                small.schedule.to_text()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {schedules} schedules broke a rule:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A world flaw makes some schedule fail; the shrunk schedule is no longer, its text
/// reads back, and replaying it fails again.
fn caught_and_shrunk(flaw: Flaw, expect: &str) {
    let params = Params {
        flaw,
        ..Params::default()
    };
    let failing = (0..300)
        .map(|seed| explore(seed, &params, false))
        .find(|o| o.failure.as_deref().is_some_and(|f| f.contains(expect)))
        .unwrap_or_else(|| panic!("no schedule caught the flaw {flaw:?}"));
    let small = shrink(&failing, 300);
    let failure = small
        .failure
        .clone()
        .expect("a shrunk schedule still fails");
    assert!(
        failure.contains(expect),
        "{flaw:?}: expected a failure about {expect:?}, got {failure}"
    );
    assert!(small.schedule.steps.len() <= failing.schedule.steps.len());
    let text = small.schedule.to_text();
    let again = Schedule::from_text(&text).expect("the replay text reads back");
    assert_eq!(again, small.schedule);
    let replayed = replay(&again, false);
    assert_eq!(
        replayed.failure, small.failure,
        "the replay fails the same way"
    );
    println!(
        "{flaw:?}: caught at seed {} ({} steps), shrunk to {}:\n{text}",
        failing.schedule.seed,
        failing.schedule.steps.len(),
        small.schedule.steps.len()
    );
}

#[test]
fn the_checker_catches_fencing_without_quorum_and_shrinks_it() {
    caught_and_shrunk(Flaw::FenceWithoutQuorum, "without quorum");
}

#[test]
fn the_checker_catches_a_kill_gate_that_forgets_and_shrinks_it() {
    caught_and_shrunk(Flaw::ForgetfulGate, "ordered killed twice");
}

/// `HV_SYSTEM_SIM_REPLAY=FILE` replays one schedule text and prints its trace.
#[test]
fn replay_from_env() {
    let Some(path) = std::env::var_os("HV_SYSTEM_SIM_REPLAY") else {
        return;
    };
    let text = std::fs::read_to_string(path).expect("the replay file reads");
    let schedule = Schedule::from_text(&text).expect("a schedule");
    let out = replay(&schedule, true);
    println!("{:?}", out.failure);
}

/// Every schedule that once broke a rule (`tests/regressions/*.json`, one per fixed
/// finding, named after it) replays without breaking any now.
#[test]
fn fixed_findings_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the regressions directory reads")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression schedules in {}",
        dir.display()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("the schedule reads");
        let schedule = Schedule::from_text(&text)
            .unwrap_or_else(|e| panic!("{}: not a schedule: {e}", path.display()));
        let out = replay(&schedule, false);
        assert_eq!(out.failure, None, "{} breaks a rule again", path.display());
    }
}
