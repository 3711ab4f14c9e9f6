//! Tables and lines for people.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hvcluster_common::admin::{EventRecord, HostStatus};
use hvcluster_common::fencing::Proof;
mod fence;

pub use fence::{fence_check, fence_event, fence_history, fence_history_json, fence_target, utc};
use hvcluster_common::membership::{FailReason, HostState, LinkState, WatchdogVerdict};

/// Text of a host state.
pub fn state(s: HostState) -> String {
    match s {
        HostState::Failed(FailReason::Silent) => "Failed (silent)".into(),
        HostState::Failed(FailReason::Panic) => "Failed (panic notice)".into(),
        HostState::Failed(FailReason::Hung) => "Failed (reported hung)".into(),
        other => format!("{other:?}"),
    }
}

fn verdict(v: WatchdogVerdict) -> String {
    match v {
        WatchdogVerdict::Ok => "ok".into(),
        WatchdogVerdict::Slow {
            lateness_ms,
            psi_percent,
        } => format!("slow ({lateness_ms} ms late, cpu {psi_percent}%)"),
        WatchdogVerdict::Hung { for_ms } => format!("HUNG {for_ms} ms"),
    }
}

/// A time span as `3.2s`, `0m42s` or `2h14m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=5_999_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// Domains running on the hosts (from their hypervisors); a domain on two hosts is
/// marked.
fn domains(s: &HostStatus) -> String {
    format!("domains:\n{}", domain_list(&s.domains))
}

/// The `hvctl vm list` table.
pub fn domain_list(domains: &[hvcluster_common::admin::DomainLine]) -> String {
    if domains.is_empty() {
        return "no domain runs on any host (or the hosts have no [hypervisor] uri)\n".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["domain", "host", "state", "uuid", "notes"]);
    for d in domains {
        let twice = domains
            .iter()
            .filter(|o| o.uuid == d.uuid && o.host != d.host)
            .count()
            > 0;
        t.add_row([
            d.name.clone(),
            d.host.clone(),
            d.state.clone(),
            d.uuid.clone(),
            if twice {
                "RUNS ON TWO HOSTS".to_string()
            } else {
                String::new()
            },
        ]);
    }
    format!("{t}\n")
}

/// Guests linked to the hosts (the host link): where each guest runs.
fn linked_guests(s: &HostStatus) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["guest", "guest cluster", "node id", "on host", "domain"]);
    for g in &s.guests {
        t.add_row([
            g.node.clone(),
            g.cluster.clone(),
            g.node_id.to_string(),
            g.host.clone(),
            g.domain.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    format!("linked guests:\n{t}\n")
}

/// `frames dropped: bad_tag 4, replayed 1` from an agent's counters (empty when none).
pub fn dropped_frames(counters: &std::collections::BTreeMap<String, u64>) -> String {
    let dropped: Vec<String> = counters
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("frames_dropped_")
                .map(|r| format!("{r} {v}"))
        })
        .collect();
    if dropped.is_empty() {
        String::new()
    } else {
        format!("frames dropped: {}\n", dropped.join(", "))
    }
}

/// The `hvctl status` table.
pub fn status(s: &HostStatus) -> String {
    let q = &s.quorum;
    let mut out = format!(
        "cluster {}  seen from {} (node {})  quorum: {}\n",
        s.cluster,
        s.host,
        s.node_id,
        if q.quorate {
            format!("yes ({} votes, {} needed)", q.votes, q.needed)
        } else if q.waiting_for_all {
            "NO (waiting to see every host once)".to_string()
        } else {
            format!("NO ({} votes present, {} needed)", q.votes, q.needed)
        }
    );
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    let mut header = vec![
        "host".to_string(),
        "id".into(),
        "state".into(),
        "for".into(),
    ];
    header.extend(s.interconnects.iter().cloned());
    header.extend(["load".to_string(), "notes".into()]);
    t.set_header(header);
    for h in &s.hosts {
        let mut row = vec![
            if h.local {
                format!("{} *", h.name)
            } else {
                h.name.clone()
            },
            h.node_id.to_string(),
            state(h.state),
            duration(h.state_for_ms),
        ];
        row.extend(h.links.iter().map(|l| match l {
            LinkState::Up => "up".to_string(),
            LinkState::Down => "DOWN".to_string(),
            LinkState::Unknown => "-".to_string(),
        }));
        row.push(verdict(h.watchdog));
        let mut notes = Vec::new();
        if let Some(f) = &h.fence {
            match f.phase.as_str() {
                "alive" => {}
                "down" => notes.push(
                    match f.down.as_ref().map(|d| &d.proof) {
                        Some(Proof::Operator) => "DOWN (confirmed by an operator)",
                        Some(Proof::KdumpNotice) => "DOWN (kdump panic notice)",
                        _ => "DOWN (fenced, proof held)",
                    }
                    .to_string(),
                ),
                "fencing" => notes.push(format!("fencing, level {}", f.level.unwrap_or(1))),
                // Pending also on hosts that leave the shooting to the coordinator.
                "pending" => notes.push("not fenced yet".to_string()),
                "waiting-kdump" => notes.push(format!(
                    "fencing, level {}: waiting for a panic notice",
                    f.level.unwrap_or(1)
                )),
                "unfenced" => notes.push(format!("UNFENCED after {} round(s)", f.failed_rounds)),
                "awaiting-operator" => notes.push("awaiting hvctl host confirm-down".to_string()),
                "journaling" => notes.push("fenced, DOWN once journaled".to_string()),
                "journal-failed" => notes
                    .push("fenced, NOT DOWN: the fencing journal cannot be written".to_string()),
                other => notes.push(format!("fence: {other}")),
            }
        }
        if h.must_rejoin {
            notes.push("heard again, must rejoin".to_string());
        }
        if h.panic_noticed {
            notes.push("panic notice".to_string());
        }
        if h.config_mismatch {
            notes.push("CONFIG DIFFERS".to_string());
        }
        if let Some(ms) = h.silent_for_ms.filter(|ms| *ms >= 1000) {
            notes.push(format!("silent {}", duration(ms)));
        }
        row.push(notes.join(", "));
        t.add_row(row);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    if !s.guests.is_empty() {
        out.push_str(&linked_guests(s));
    }
    if let Some(why) = &s.hypervisor_problem {
        out.push_str(&format!("hypervisor: DEGRADED, {why}\n"));
    }
    if let Some(why) = &s.journal_problem {
        out.push_str(&format!("fencing journal: FAILING, {why}\n"));
    }
    if !s.domains.is_empty() {
        out.push_str(&domains(s));
    }
    for line in &s.maintenance {
        out.push_str(&format!("maintenance: {line}\n"));
    }
    for m in s.migrations.iter().filter(|m| !m.ended) {
        let host = |id| {
            s.hosts
                .iter()
                .find(|h| h.node_id == id)
                .map_or_else(|| format!("node{id}"), |h| h.name.clone())
        };
        out.push_str(&format!(
            "migrating: {} from {} to {} ({})\n",
            m.name,
            host(m.from),
            host(m.to),
            m.mode
        ));
    }
    if !s.applications.is_empty() {
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        out.push_str("host-side applications:\n");
        out.push_str(&crate::guest::applications_table(
            &names,
            &s.host,
            &s.applications,
        ));
    }
    out.push_str(&dropped_frames(&s.counters));
    if let Some(n) = s.counters.get("kdump_refused") {
        out.push_str(&format!("panic notices refused (unknown sender): {n}\n"));
    }
    if !s.realtime {
        out.push_str("note: the agent runs without real-time scheduling\n");
    }
    out
}

/// One line of `hvctl events`.
pub fn event(e: &EventRecord) -> String {
    let secs = e.unix_us / 1_000_000;
    let (h, m, sec) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "{h:02}:{m:02}:{sec:02}.{:03} #{:<5} {:<14} {}",
        (e.unix_us / 1000) % 1000,
        e.seq,
        e.kind,
        e.message
    )
}

#[cfg(test)]
mod tests {
    use hvcluster_common::fencing::DownRecord;

    use super::*;

    #[test]
    fn status_notes_say_how_a_host_is_down() {
        use hvcluster_common::admin::HostLine;
        use hvcluster_common::fencing::TargetStatus;
        use hvcluster_common::quorum::QuorumState;
        let line = |name: &str, proof: Proof| HostLine {
            name: name.into(),
            node_id: name[1..].parse().unwrap(),
            weight: 1,
            local: false,
            state: HostState::Failed(FailReason::Silent),
            state_for_ms: 4000,
            links: vec![LinkState::Down],
            incarnation: Some(5),
            watchdog: WatchdogVerdict::Ok,
            must_rejoin: false,
            panic_noticed: false,
            silent_for_ms: Some(5000),
            config_mismatch: false,
            fence: Some(TargetStatus {
                node: 2,
                phase: "down".into(),
                level: None,
                failed_rounds: 0,
                down: Some(DownRecord {
                    target: 2,
                    incarnation: 5,
                    proof,
                    by: 1,
                }),
            }),
        };
        let s = HostStatus {
            cluster: "c".into(),
            host: "h1".into(),
            node_id: 1,
            incarnation: 1,
            started_unix_ms: 0,
            quorum: QuorumState {
                quorate: true,
                votes: 2,
                needed: 2,
                waiting_for_all: false,
            },
            watchdog: WatchdogVerdict::Ok,
            realtime: true,
            memory_locked: true,
            interconnects: vec!["ic0".into()],
            hosts: vec![
                line("h2", Proof::Operator),
                line(
                    "h3",
                    Proof::PowerOff {
                        devices: vec!["ipmi-h3".into()],
                    },
                ),
            ],
            counters: Default::default(),
            domains: ["h1", "h2"]
                .iter()
                .map(|h| hvcluster_common::admin::DomainLine {
                    host: h.to_string(),
                    name: "db".into(),
                    uuid: "u-1".into(),
                    state: "Running".into(),
                })
                .collect(),
            guests: vec![hvcluster_common::admin::LinkedGuestLine {
                host: "h2".into(),
                cluster: "erp".into(),
                node: "vm2".into(),
                node_id: 2,
                domain: None,
            }],
            hypervisor_problem: Some("libvirt did not answer within 10 s".into()),
            applications: vec![hvcluster_common::admin::AppLine {
                name: "vm-db".into(),
                state: hvcluster_common::application::AppState::Online,
                online_on: Some("h3".into()),
                target: Some("h3".into()),
                maintenance: false,
                nodes: vec![hvcluster_common::admin::AppNodeLine {
                    node: "h3".into(),
                    state: hvcluster_common::application::AppState::Online,
                    fault: None,
                }],
                resources: Vec::new(),
            }],
            migrations: vec![hvcluster_common::migration::MigrationLock {
                name: "db".into(),
                uuid: "u-1".into(),
                from: 2,
                to: 3,
                mode: hvcluster_common::migration::MigrationMode::Live,
                ended: false,
                cluster: None,
            }],
            maintenance: vec!["h3: in maintenance".into()],
            journal_problem: Some("/var/lib/hvcluster/fencing.journal cannot be written".into()),
        };
        let table = status(&s);
        assert!(
            table.contains("migrating: db from h2 to h3 (live)"),
            "{table}"
        );
        assert!(table.contains("maintenance: h3: in maintenance"), "{table}");
        assert!(table.contains("host-side applications:"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("vm-db") && l.matches("Online").count() == 2),
            "the application's row names its state and its state on h3: {table}"
        );
        assert!(
            table.contains("hypervisor: DEGRADED, libvirt did not answer within 10 s"),
            "{table}"
        );
        assert!(
            table.contains("fencing journal: FAILING, /var/lib/hvcluster/fencing.journal"),
            "{table}"
        );
        assert!(table.contains("linked guests:"), "{table}");
        assert!(
            table
                .lines()
                .filter(|l| l.contains(" db ") && l.contains("RUNS ON TWO HOSTS"))
                .count()
                == 2,
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.contains("vm2") && l.contains("erp") && l.contains("h2")),
            "{table}"
        );
        assert!(table.contains("DOWN (confirmed by an operator)"), "{table}");
        assert!(table.contains("DOWN (fenced, proof held)"), "{table}");
    }
}
