//! Fencing as people read it: events, the journaled history (also as JSON), device checks
//! and the UTC dates they carry.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hvcluster_common::admin::{DeviceCheck, FenceHistory, FenceHistoryRecord};
use hvcluster_common::config::{DeviceKind, NodeId};
use hvcluster_common::fencing::{FenceEvent, Proof};

use super::duration;

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
}
