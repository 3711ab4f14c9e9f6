//! Tables and lines for people.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hvcluster_common::admin::{EventRecord, HostStatus};
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

fn duration(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=5_999_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
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
                "down" => notes.push("DOWN (fenced, proof held)".to_string()),
                "fencing" => notes.push(format!("fencing, level {}", f.level.unwrap_or(1))),
                "unfenced" => notes.push(format!("UNFENCED after {} round(s)", f.failed_rounds)),
                "awaiting-operator" => notes.push("awaiting hvctl host confirm-down".to_string()),
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
    let dropped: Vec<String> = s
        .counters
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("frames_dropped_")
                .map(|r| format!("{r} {v}"))
        })
        .collect();
    if !dropped.is_empty() {
        out.push_str(&format!("frames dropped: {}\n", dropped.join(", ")));
    }
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
