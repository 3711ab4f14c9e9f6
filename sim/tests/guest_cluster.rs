//! The seeded simulation of the guest cluster's engine (see `hvcluster_sim::guests`).

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[test]
fn seeded_guest_cluster_simulation() {
    let steps = env("HV_GUEST_SIM_STEPS").unwrap_or(200);
    if let Some(seed) = env::<u64>("HV_GUEST_SIM_SEED") {
        if let Err(e) = hvcluster_sim::guests::run_seed(seed, steps, true) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    let seeds: u64 = env("HV_GUEST_SIM_SEEDS").unwrap_or(300);
    let mut failures = Vec::new();
    let first: u64 = env("HV_GUEST_SIM_FIRST").unwrap_or(0);
    for seed in first..first + seeds {
        if let Err(e) = hvcluster_sim::guests::run_seed(seed, steps, false) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} schedules broke an invariant (replay one with HV_GUEST_SIM_SEED=<seed> \
         cargo test -p hvcluster-sim --test guest_cluster -- --nocapture):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{seeds} seeded guest schedules of {steps} steps held every invariant");
}
