//! Tables and lines for people.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hvcluster_common::admin::{
    DeviceCheck, EventRecord, FenceHistory, FenceHistoryRecord, HostStatus,
};
use hvcluster_common::config::{DeviceKind, NodeId};
use hvcluster_common::fencing::{FenceEvent, Proof};
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

/// The host a fencing event is about.
pub fn fence_target(e: &FenceEvent) -> NodeId {
    match e {
        FenceEvent::Started { target, .. }
        | FenceEvent::RaceDelay { target, .. }
        | FenceEvent::LevelFailed { target, .. }
        | FenceEvent::AllLevelsFailed { target, .. }
        | FenceEvent::NoFenceLevels { target }
        | FenceEvent::AwaitingOperator { target }
        | FenceEvent::Rejoined { target, .. }
        | FenceEvent::JournalFailed { target, .. } => *target,
        FenceEvent::Down(r) => r.target,
    }
}

/// The event column of `hvctl fence history`, e.g. `fencing, level 1` or
/// `DOWN (power-off via ipmi-h3 by h1)`; `name` maps node ids to host names.
pub fn fence_event(e: &FenceEvent, name: impl Fn(NodeId) -> String) -> String {
    match e {
        FenceEvent::Started { level, .. } => format!("fencing, level {level}"),
        FenceEvent::RaceDelay { delay_ms, .. } => {
            format!("two-node race: waiting {delay_ms} ms before fencing")
        }
        FenceEvent::LevelFailed { level, detail, .. } => format!("level {level} failed: {detail}"),
        FenceEvent::AllLevelsFailed {
            round, retry_in_ms, ..
        } => format!("EVERY LEVEL FAILED (round {round}); retrying in {retry_in_ms} ms"),
        FenceEvent::NoFenceLevels { .. } => {
            "no fence level configured: awaiting hvctl host confirm-down".into()
        }
        FenceEvent::AwaitingOperator { .. } => {
            "manual level: awaiting hvctl host confirm-down".into()
        }
        FenceEvent::Down(r) => {
            let by = name(r.by);
            match &r.proof {
                Proof::PowerOff { devices } => {
                    format!("DOWN (power-off via {} by {by})", devices.join(", "))
                }
                Proof::KdumpNotice => format!("DOWN (kdump panic notice, accepted by {by})"),
                Proof::Operator => format!("DOWN (confirmed by an operator on {by})"),
            }
        }
        FenceEvent::Rejoined { incarnation, .. } => {
            format!("back after fencing (incarnation {incarnation}): no longer DOWN")
        }
        FenceEvent::JournalFailed { detail, .. } => {
            format!("off, but its DOWN could not be journaled: {detail}")
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm`, in UTC, of milliseconds since the Unix epoch.
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let mut days = secs / 86_400;
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    for len in [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year}-{month:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        days + 1,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        unix_ms % 1000
    )
}

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn host_of(h: &FenceHistory, id: NodeId) -> String {
    h.host_name(id)
}

/// The `hvctl fence history` table.
pub fn fence_history(h: &FenceHistory) -> String {
    if h.records.is_empty() {
        return "no fencing event in this host's journal\n".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["#", "time (UTC)", "host", "event"]);
    for r in &h.records {
        t.add_row([
            r.seq.to_string(),
            utc(r.unix_ms),
            host_of(h, fence_target(&r.event)),
            fence_event(&r.event, |n| host_of(h, n)),
        ]);
    }
    format!("{t}\n")
}

/// One `hvctl fence history --json` line: the record with the host's name and the
/// event's text.
pub fn fence_history_json(h: &FenceHistory, r: &FenceHistoryRecord) -> String {
    // A struct rather than a `Value`, whose map would sort the keys and put `event` first.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        seq: u64,
        unix_ms: u64,
        host: String,
        text: String,
        event: &'a FenceEvent,
    }
    serde_json::to_string(&Line {
        seq: r.seq,
        unix_ms: r.unix_ms,
        host: host_of(h, fence_target(&r.event)),
        text: fence_event(&r.event, |n| host_of(h, n)),
        event: &r.event,
    })
    .unwrap_or_default()
}

/// The `hvctl fence check` table.
pub fn fence_check(devices: &[DeviceCheck]) -> String {
    if devices.is_empty() {
        return "no fence device is configured ([[fence_device]] in cluster.toml)\n".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["device", "result", "time", "detail"]);
    for d in devices {
        let (result, detail) = match d.ok {
            Some(true) => ("ok".to_string(), d.summary.clone()),
            Some(false) => ("FAILED".to_string(), d.summary.clone()),
            None => (d.summary.clone(), not_checkable_why(d.kind).to_string()),
        };
        t.add_row([
            d.name.clone(),
            result,
            d.elapsed_ms.map_or("-".to_string(), duration),
            detail,
        ]);
    }
    format!("{t}\n")
}

fn not_checkable_why(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Kdump => "the proof is the host's own panic notice; nothing to call",
        DeviceKind::Manual => "an operator confirms with hvctl host confirm-down",
        DeviceKind::Agent => "",
    }
}

#[cfg(test)]
mod tests {
    use hvcluster_common::admin::HostName;
    use hvcluster_common::fencing::DownRecord;

    use super::*;

    #[test]
    fn utc_dates_cross_years_and_leap_days() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        // 2024-02-29 23:59:59.999 UTC
        assert_eq!(utc(1_709_251_199_999), "2024-02-29 23:59:59.999");
        assert_eq!(utc(1_709_251_200_000), "2024-03-01 00:00:00.000");
        // 2000 is a leap year, 2100 is not.
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00.000");
        assert_eq!(utc(1_735_689_599_000), "2024-12-31 23:59:59.000");
    }

    fn history() -> FenceHistory {
        let record = |seq, event| FenceHistoryRecord {
            seq,
            unix_ms: 1_735_689_600_000 + seq * 1000,
            event,
        };
        FenceHistory {
            hosts: [(1, "h1"), (3, "h3")]
                .map(|(node_id, name)| HostName {
                    node_id,
                    name: name.into(),
                })
                .to_vec(),
            records: vec![
                record(
                    1,
                    FenceEvent::Started {
                        target: 3,
                        level: 1,
                    },
                ),
                record(
                    2,
                    FenceEvent::LevelFailed {
                        target: 3,
                        level: 1,
                        detail: "ipmi-h3: off failed (exit 1): Unable to connect".into(),
                    },
                ),
                record(
                    3,
                    FenceEvent::Down(DownRecord {
                        target: 3,
                        incarnation: 9,
                        proof: Proof::PowerOff {
                            devices: vec!["ipmi-h3".into()],
                        },
                        by: 1,
                    }),
                ),
                record(4, FenceEvent::NoFenceLevels { target: 7 }),
            ],
            damage: None,
        }
    }

    #[test]
    fn history_lines_name_hosts_and_proofs() {
        let h = history();
        let name = |n| host_of(&h, n);
        let texts: Vec<String> = h
            .records
            .iter()
            .map(|r| fence_event(&r.event, name))
            .collect();
        assert_eq!(
            texts,
            [
                "fencing, level 1",
                "level 1 failed: ipmi-h3: off failed (exit 1): Unable to connect",
                "DOWN (power-off via ipmi-h3 by h1)",
                "no fence level configured: awaiting hvctl host confirm-down",
            ]
        );
        let operator = FenceEvent::Down(DownRecord {
            target: 3,
            incarnation: 0,
            proof: Proof::Operator,
            by: 1,
        });
        assert_eq!(
            fence_event(&operator, name),
            "DOWN (confirmed by an operator on h1)"
        );
    }

    #[test]
    fn history_table_says_utc_and_names_unknown_ids() {
        let table = fence_history(&history());
        assert!(table.contains("time (UTC)"), "{table}");
        assert!(table.contains("2025-01-01 00:00:03.000"), "{table}");
        assert!(
            table.contains("DOWN (power-off via ipmi-h3 by h1)"),
            "{table}"
        );
        assert!(table.contains("node7"), "{table}");
        assert_eq!(
            fence_history(&FenceHistory {
                records: vec![],
                ..history()
            }),
            "no fencing event in this host's journal\n"
        );
    }

    #[test]
    fn history_json_carries_host_text_and_event() {
        let h = history();
        let line = fence_history_json(&h, &h.records[2]);
        assert!(line.starts_with(r#"{"seq":3,"unix_ms":"#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["host"], "h3");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["text"], "DOWN (power-off via ipmi-h3 by h1)");
        assert_eq!(v["event"]["down"]["by"], 1);
    }

    #[test]
    fn check_table_shows_failures_and_uncheckable_kinds() {
        let d = |name: &str, kind, ok, elapsed_ms, summary: &str| DeviceCheck {
            name: name.into(),
            kind,
            ok,
            elapsed_ms,
            summary: summary.into(),
        };
        let table = fence_check(&[
            d(
                "ipmi-h1",
                DeviceKind::Agent,
                Some(true),
                Some(840),
                "reachable",
            ),
            d(
                "pdu-a",
                DeviceKind::Agent,
                Some(false),
                Some(20_000),
                "(timed out after 20000 ms)",
            ),
            d(
                "crash",
                DeviceKind::Kdump,
                None,
                None,
                "not checkable (kind kdump)",
            ),
        ]);
        assert!(
            table.contains("device") && table.contains("detail"),
            "{table}"
        );
        assert!(
            table.contains("0.8s") && table.contains("reachable"),
            "{table}"
        );
        assert!(
            table.contains("FAILED") && table.contains("timed out"),
            "{table}"
        );
        assert!(table.contains("not checkable (kind kdump)"), "{table}");
    }

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
