//! Benchmarks: repeated scenario runs and load soaks, printed as one JSON object.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{ClusterSpec, LabCluster};
use crate::scenario::{self, RunOptions, Scenario, Step};

pub mod failover;
pub mod migrate;

pub use failover::{analyse, failover, FailoverBench, FailoverRun, Fault, GuestEnd};

/// p50, p95 and max of a phase, ms.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// What failed in run `i` (0-based), for a benchmark's `failures`.
pub(crate) fn failed_run(i: usize, outcome: &scenario::Outcome) -> String {
    let failed: Vec<_> = outcome
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} ({})", c.text, c.detail))
        .collect();
    format!("run {}: {}", i + 1, failed.join("; "))
}

/// Nearest-rank percentiles of `values` (`None` when empty).
pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Some(Percentiles {
        p50: round(rank(0.50)),
        p95: round(rank(0.95)),
        max: round(v[v.len() - 1]),
    })
}

/// Result of `hvlab bench detect` (and of other phase benchmarks).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseBench {
    /// Benchmark name.
    pub bench: String,
    /// Scenario run.
    pub scenario: String,
    /// Runs attempted.
    pub runs: usize,
    /// Runs whose every expectation held.
    pub ok_runs: usize,
    /// Phase figures over the ok runs.
    pub phases_ms: BTreeMap<String, Percentiles>,
    /// Hosts marked Failed that no fault touched, over all runs.
    pub violations: usize,
    /// Why runs failed, if any did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Hosts a scenario's faults touch.
fn faulted_hosts(s: &Scenario) -> BTreeSet<String> {
    s.steps
        .iter()
        .filter(|st| st.is_fault())
        .flat_map(|st| match st {
            Step::PowerLoss { host }
            | Step::Crash { host }
            | Step::Hang { host }
            | Step::Thaw { host }
            | Step::CutLink { host, .. }
            | Step::Isolate { host }
            | Step::Heal { host }
            | Step::Loss { host, .. }
            | Step::KdumpNotice { host }
            | Step::RestartAgent { host }
            | Step::KillAgent { host }
            | Step::StopAgent { host } => vec![host.clone()],
            Step::OneWayCut { from, to } => vec![from.clone(), to.clone()],
            Step::Load { hosts, .. } => hosts.clone(),
            _ => vec![],
        })
        .collect()
}

/// Runs `scenario` `runs` times and gathers its measured phases.
pub fn phases(bench: &str, scenario: &Scenario, runs: usize, progress: bool) -> PhaseBench {
    let faulted = faulted_hosts(scenario);
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut ok_runs = 0;
    let mut violations = 0;
    let mut failures = Vec::new();
    for i in 0..runs {
        match scenario::run(scenario, RunOptions::default()) {
            Ok(outcome) => {
                violations += outcome
                    .events
                    .iter()
                    .filter(|e| e.kind == "host_state" && e.message.contains("-> Failed"))
                    .filter(|e| e.subject.as_ref().is_some_and(|s| !faulted.contains(s)))
                    // A faulted host's own view (a thawed host, an isolated one) is not a
                    // false detection by the cluster.
                    .filter(|e| !faulted.contains(&e.observer))
                    .count();
                if outcome.ok() {
                    ok_runs += 1;
                    for (k, v) in &outcome.measures {
                        samples.entry(k.clone()).or_default().push(*v);
                    }
                } else {
                    failures.push(failed_run(i, &outcome));
                }
                if progress {
                    eprintln!(
                        "run {}/{runs}: {}  {:?}",
                        i + 1,
                        if outcome.ok() { "ok" } else { "FAILED" },
                        outcome.measures
                    );
                }
            }
            Err(e) => {
                failures.push(format!("run {}: {e:#}", i + 1));
                if progress {
                    eprintln!("run {}/{runs}: error {e:#}", i + 1);
                }
            }
        }
    }
    PhaseBench {
        bench: bench.to_string(),
        scenario: scenario.name.clone(),
        runs,
        ok_runs,
        phases_ms: samples
            .iter()
            .filter_map(|(k, v)| percentiles(v).map(|p| (k.clone(), p)))
            .collect(),
        violations,
        failures,
    }
}

/// Result of `hvlab bench false-positive`.
#[derive(Debug, Clone, Serialize)]
pub struct FalsePositiveBench {
    /// Always "false-positive".
    pub bench: String,
    /// Seconds of load.
    pub seconds: u64,
    /// Times any host marked a live host Suspect.
    pub false_suspects: usize,
    /// Times any host marked a live host Failed.
    pub false_failed: usize,
    /// Heartbeat interval, suspect and dead times used, ms.
    pub timings_ms: [u64; 3],
    /// How often the hosts' load watchdogs reported slow or hung.
    pub slow_reports: usize,
}

/// Runs stress-ng on every host for `seconds` and counts false suspicions and failures.
pub fn false_positive(seconds: u64, spec: &ClusterSpec) -> anyhow::Result<FalsePositiveBench> {
    let cluster = LabCluster::start(spec)?;
    cluster.wait_all_up(Duration::from_secs(20))?;
    let from = unix_now_us();
    for h in cluster.hosts() {
        cluster.lab.start_load(&h, seconds)?;
    }
    std::thread::sleep(Duration::from_secs(seconds));
    for h in cluster.hosts() {
        cluster.lab.stop_load(&h);
    }
    std::thread::sleep(Duration::from_millis(200));
    let events: Vec<_> = cluster
        .events
        .snapshot()
        .into_iter()
        .filter(|e| e.unix_us >= from)
        .collect();
    let count = |needle: &str| {
        events
            .iter()
            .filter(|e| e.kind == "host_state" && e.message.contains(needle))
            .count()
    };
    let result = FalsePositiveBench {
        bench: "false-positive".into(),
        seconds,
        false_suspects: count("-> Suspect"),
        false_failed: count("-> Failed"),
        timings_ms: [spec.interval_ms, spec.suspect_after_ms, spec.dead_after_ms],
        slow_reports: events
            .iter()
            .filter(|e| e.kind == "watchdog" && !e.message.ends_with(": ok"))
            .count(),
    };
    drop(cluster);
    Ok(result)
}

/// Now, µs since the epoch.
fn unix_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(|x| x as f64).collect();
        assert_eq!(
            percentiles(&v),
            Some(Percentiles {
                p50: 10.0,
                p95: 19.0,
                max: 20.0
            })
        );
        assert_eq!(
            percentiles(&[5.0]),
            Some(Percentiles {
                p50: 5.0,
                p95: 5.0,
                max: 5.0
            })
        );
        assert_eq!(percentiles(&[]), None);
    }
}
