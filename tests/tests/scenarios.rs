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

#[test]
fn host_leave() {
    run("host-leave");
}

/// `hvctl status` and `hvctl events` against live agents, as an operator runs them.
#[test]
fn hvctl_against_live_agents() {
    use hvlab::cluster::{bin_dir, ClusterSpec, LabCluster};
    use std::process::Command;
    use std::time::Duration;

    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = LabCluster::start(&ClusterSpec::default()).unwrap();
    cluster.wait_all_up(Duration::from_secs(20)).unwrap();
    cluster.lab.power_loss("h3").unwrap();
    cluster.reap_agent("h3");
    std::thread::sleep(Duration::from_millis(2000));
    let hvctl = |args: &[&str]| {
        let out = Command::new(bin_dir().unwrap().join("hvctl"))
            .arg("--socket")
            .arg(cluster.socket("h1"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hvctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = hvctl(&["status"]);
    assert!(
        table.contains("seen from h1 (node 1)  quorum: yes (2 votes, 2 needed)"),
        "{table}"
    );
    let h3 = table.lines().find(|l| l.contains(" h3 ")).unwrap();
    assert!(
        h3.contains("Failed (silent)") && h3.contains("DOWN"),
        "{table}"
    );
    let h2 = table.lines().find(|l| l.contains(" h2 ")).unwrap();
    assert!(h2.contains(" Up ") && h2.contains(" up "), "{table}");

    let json: serde_json::Value = serde_json::from_str(&hvctl(&["status", "--json"])).unwrap();
    assert_eq!(json["host"], "h1");
    assert_eq!(json["hosts"][2]["state"]["failed"], "silent");

    let events = hvctl(&["events"]);
    assert!(
        events.contains("h3: Suspect -> Failed (silent)"),
        "{events}"
    );
    let lines: Vec<serde_json::Value> = hvctl(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines
        .iter()
        .any(|e| e["kind"] == "host_state" && e["subject"] == "h3"));
}

#[test]
fn fence_power_loss() {
    run("fence-power-loss");
}

#[test]
fn fence_level_fallback() {
    run("fence-level-fallback");
}

#[test]
fn demo() {
    run("demo");
}

#[test]
fn fence_hang() {
    run("fence-hang");
}

#[test]
fn fence_kdump() {
    run("fence-kdump");
}

#[test]
fn fence_kdump_proof() {
    run("fence-kdump-proof");
}

#[test]
fn fence_race_2node() {
    run("fence-race-2node");
}

#[test]
fn fence_minority() {
    run("fence-minority");
}

#[test]
fn fence_coordinator_dies() {
    run("fence-coordinator-dies");
}

#[test]
fn fence_journal() {
    run("fence-journal");
}

#[test]
fn fence_all_fail() {
    run("fence-all-fail");
}

#[test]
fn app_start() {
    run("app-start");
}

#[test]
fn app_resource_failure() {
    run("app-resource-failure");
}

#[test]
fn app_switch() {
    run("app-switch");
}

#[test]
fn app_stop_fails() {
    run("app-stop-fails");
}

#[test]
fn guest_crash_leftcluster() {
    run("guest-crash-leftcluster");
}

#[test]
fn guest_rejoin() {
    run("guest-rejoin");
}

#[test]
fn app_maintenance() {
    run("app-maintenance");
}

#[test]
fn linked_power_loss() {
    run("linked-power-loss");
}

#[test]
fn linked_kdump_panic() {
    run("linked-kdump-panic");
}

#[test]
fn linked_hang() {
    run("linked-hang");
}

#[test]
fn no_host_link() {
    run("no-host-link");
}

#[test]
fn guest_hang() {
    run("guest-hang");
}

#[test]
fn guest_kill_refused() {
    run("guest-kill-refused");
}

#[test]
fn linked_host_isolated() {
    run("linked-host-isolated");
}

#[test]
fn notice_lost_then_retried() {
    run("notice-lost-then-retried");
}

#[test]
fn slow_host_no_kill() {
    run("slow-host-no-kill");
}

#[test]
fn vm_tracking() {
    run("vm-tracking");
}

#[test]
fn vm_double_start_refused() {
    run("vm-double-start-refused");
}

#[test]
fn vm_double_run_detected() {
    run("vm-double-run-detected");
}

#[test]
fn vm_ha_restart() {
    run("vm-ha-restart");
}

#[test]
fn real_guest_failover() {
    run("real-guest-failover");
}

#[test]
fn libvirt_cmdline() {
    run("libvirt-cmdline");
}

#[test]
fn host_app_vm_failover() {
    run("host-app-vm-failover");
}

#[test]
fn migrate_live() {
    run("migrate-live");
}

#[test]
fn host_maintenance() {
    run("host-maintenance");
}

#[test]
fn migrate_export() {
    run("migrate-export");
}

#[test]
fn migrate_fails() {
    run("migrate-fails");
}

#[test]
fn migrate_offline() {
    run("migrate-offline");
}

#[test]
fn switch_during_migrate_held() {
    run("switch-during-migrate-held");
}

#[test]
fn migrate_during_switch_refused() {
    run("migrate-during-switch-refused");
}

#[test]
fn link_slowloris() {
    run("link-slowloris");
}

#[test]
fn key_file_mode() {
    run("key-file-mode");
}

#[test]
fn realtime_children() {
    run("realtime-children");
}

#[test]
fn admin_audit() {
    run("admin-audit");
}

#[test]
fn kdump_spoof_alive() {
    run("kdump-spoof-alive");
}

#[test]
fn kdump_spoof_alive_ipmi() {
    run("kdump-spoof-alive-ipmi");
}

#[test]
fn udp_flood_detect() {
    run("udp-flood-detect");
}

#[test]
fn guest_claims_foreign_domain() {
    run("guest-claims-foreign-domain");
}

#[test]
fn kill_request_flood() {
    run("kill-request-flood");
}

#[test]
fn replay_after_restart() {
    run("replay-after-restart");
}

/// A scenario shipped without its test here would never run in CI.
#[test]
fn every_shipped_scenario_has_its_test() {
    let source = include_str!("scenarios.rs");
    let missing: Vec<&str> = hvlab::scenario::EMBEDDED
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != "demo" && !source.contains(&format!("run(\"{name}\")")))
        .collect();
    assert!(missing.is_empty(), "scenarios without a test: {missing:?}");
}

#[test]
fn journal_write_fails() {
    run("journal-write-fails");
}

#[test]
fn corrupt_state_files() {
    run("corrupt-state-files");
}

#[test]
fn state_disk_blocked() {
    run("state-disk-blocked");
}
