//! The seeded simulation of the host cluster cores (see `hvcluster_sim::hosts`).

#[test]
fn seeded_host_cluster_simulation() {
    if let Some(seed) = std::env::var("HV_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = hvcluster_sim::hosts::run_seed(seed, true) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    let seeds: u64 = std::env::var("HV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        if let Err(e) = hvcluster_sim::hosts::run_seed(seed, false) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} schedules broke an invariant (replay one with HV_SIM_SEED=<seed> cargo test -p hvcluster-sim \
         --test host_cluster -- --nocapture):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{seeds} seeded schedules held every invariant");
}
