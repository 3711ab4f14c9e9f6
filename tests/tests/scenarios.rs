//! Every shipped lab scenario, run end to end: real hv-hostd processes in network
//! namespaces, real faults. Needs root (CI runs as root).

use std::sync::Mutex;

use hvlab::scenario::{self, RunOptions, Scenario};

/// Lab scenarios measure timing: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(name: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab scenarios need root (network namespaces, cgroups)"
    );
    let s = Scenario::load(name).unwrap();
    let outcome = scenario::run(&s, RunOptions::default()).unwrap();
    println!("{}", outcome.timeline);
    assert!(
        outcome.ok(),
        "scenario {name} failed:\n{}",
        outcome.timeline
    );
}

#[test]
fn detect_power_loss() {
    run("detect-power-loss");
}

#[test]
fn detect_hang() {
    run("detect-hang");
}

#[test]
fn detect_kdump() {
    run("detect-kdump");
}

#[test]
fn link_cut() {
    run("link-cut");
}

#[test]
fn isolation() {
    run("isolation");
}

#[test]
fn forged() {
    run("forged");
}

#[test]
fn agent_restart() {
    run("agent-restart");
}
