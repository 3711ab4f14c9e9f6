//! The readable timeline of a run: lab actions and agents' events side by side.

use std::collections::BTreeMap;

use hvcluster_common::admin::EventRecord;

use super::run::Check;

/// Event kinds worth showing in a timeline.
const SHOWN: &[&str] = &[
    "host_state",
    "link",
    "quorum",
    "incarnation",
    "must_rejoin",
    "expelled",
    "rejoined",
    "kdump_notice",
    "kdump_refused",
    "frame_dropped",
    "config_mismatch",
    "started",
    "watchdog",
    "stalled",
    "fence_started",
    "fence_race_delay",
    "fence_level_failed",
    "fence_failed",
    "fence_unconfigured",
    "fence_manual",
    "host_down",
    "host_down_restored",
    "fence_cleared",
    "node_state",
    "app_state",
    "placement",
    "resource_fault",
    "op_failed",
    "app_waiting",
    "kill_requested",
    "declared_down",
    "operator",
    "rejoin",
    "guest_linked",
    "guest_unlinked",
    "host_down_notice",
    "host_link",
    "host_link_lost",
    "guest_destroying",
    "guest_destroyed",
    "guest_destroy_failed",
    "node_killed",
    "kill_failed",
    "kill_refused",
    "kill_deferred",
    "domain_double_run",
    "hypervisor_unreachable",
    "hypervisor_back",
    "domain_double_run_resolving",
    "domain_double_run_resolved",
    "domain_double_run_unresolved",
    "vm_ha_lost",
    "vm_ha_starting",
    "vm_ha_started",
    "vm_ha_start_failed",
    "vm_ha_waiting",
    "vm_ha_restarted",
];

/// Renders steps and events relative to `start_us`, then the checks and measures.
pub fn render(
    start_us: u64,
    steps: &[(u64, String)],
    events: &[EventRecord],
    checks: &[Check],
    measures: &BTreeMap<String, f64>,
) -> String {
    let mut lines: Vec<(u64, String, String)> = steps
        .iter()
        .map(|(t, text)| (*t, "[lab]".to_string(), format!(">> {text}")))
        .collect();
    lines.extend(
        events
            .iter()
            .filter(|e| e.unix_us >= start_us && SHOWN.contains(&e.kind.as_str()))
            .map(|e| (e.unix_us, e.observer.clone(), e.message.clone())),
    );
    lines.sort_by_key(|l| l.0);
    let mut out =
        String::from("timeline (seconds since the scenario started; who saw it; what):\n");
    for (t, who, text) in lines {
        let rel = t.saturating_sub(start_us) as f64 / 1e6;
        out.push_str(&format!("  +{rel:>7.3}s  {who:<6} {text}\n"));
    }
    out.push_str("checks:\n");
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("  {mark} {}", c.text));
        if !c.ok {
            out.push_str(&format!(" — {}", c.detail));
        }
        out.push('\n');
    }
    if !measures.is_empty() {
        out.push_str("measured:\n");
        for (k, v) in measures {
            out.push_str(&format!("  {k}: {v:.1} ms\n"));
        }
    }
    out
}
