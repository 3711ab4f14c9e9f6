//! Tables for a guest agent's answers: the `hvctl status` of a guest cluster.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hvcluster_common::admin::{AppLine, GuestNodeLine, GuestNodeState, GuestStatus, ResourceLine};
use hvcluster_common::application::ResourceState;

use crate::render::duration;

/// Below this silence a node counts as heard now (the host table uses the same bound).
const HEARD_NOW_MS: u64 = 1000;

/// The `hvctl status` text of a guest agent: the header line, the nodes table and the
/// applications table.
pub fn status(s: &GuestStatus) -> String {
    let mut out = format!(
        "guest cluster {}  seen from {} (node {})  coordinator: {}  host link: {}\n",
        s.cluster,
        s.node,
        s.node_id,
        s.coordinator.as_deref().unwrap_or("none"),
        s.host_link
            .as_deref()
            .map_or_else(|| "none".to_string(), |h| format!("to {h}"))
    );
    out.push_str(&nodes_table(s));
    if s.applications.is_empty() {
        out.push_str("no application is configured ([[application]] in guest.toml)\n");
    } else {
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        out.push_str(&applications_table(&names, &s.node, &s.applications));
    }
    out.push_str(&crate::render::dropped_frames(&s.counters));
    out
}

fn nodes_table(s: &GuestStatus) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["node", "id", "state", "last heard", "reason"]);
    for n in &s.nodes {
        t.add_row([
            if n.me {
                format!("{} *", n.name)
            } else {
                n.name.clone()
            },
            n.node_id.to_string(),
            n.state.to_string(),
            match n.last_heard_ms {
                _ if n.me => "-".to_string(),
                None => "never".to_string(),
                Some(ms) => format!("{} ago", duration(ms)),
            },
            node_reason(n),
        ]);
    }
    format!("{t}\n")
}

/// Why a node is in its state, and what an operator may do about it.
pub fn node_reason(n: &GuestNodeLine) -> String {
    if n.me {
        return "this node".into();
    }
    let heard_now = n.last_heard_ms.is_some_and(|ms| ms < HEARD_NOW_MS);
    let silent = match n.last_heard_ms {
        Some(ms) => format!("silent {}", duration(ms)),
        None => "never heard".to_string(),
    };
    match n.state {
        GuestNodeState::Up => "in the cluster: its heartbeats arrive".into(),
        GuestNodeState::ComingUp if n.incarnation == 0 || n.last_heard_ms.is_none() => {
            "not heard since this agent started".into()
        }
        GuestNodeState::ComingUp => "heard, not yet for long enough to count".into(),
        GuestNodeState::LeftCluster => format!(
            "{silent}, not proved dead: what ran there may still run; check that it is off, \
             then: hvctl node down {}",
            n.name
        ),
        GuestNodeState::Down if heard_now => {
            "back with a new incarnation: UP once it has joined".into()
        }
        GuestNodeState::Down => format!("proved dead ({silent})"),
    }
}

/// The applications table: one column per node (or host) of the cluster, in `names`'
/// order (a node outside an application's node list shows `-` there); the resources
/// column is as `me` runs them.
pub fn applications_table(names: &[&str], me: &str, applications: &[AppLine]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    let mut header = vec!["application".to_string(), "state".into()];
    header.extend(names.iter().map(|n| n.to_string()));
    header.extend([
        "online on".to_string(),
        "faults".into(),
        format!("resources on {me}"),
        "notes".into(),
    ]);
    t.set_header(header);
    for a in applications {
        let mut row = vec![a.name.clone(), a.state.to_string()];
        row.extend(names.iter().map(|n| {
            a.nodes
                .iter()
                .find(|l| l.node == *n)
                .map_or("-".to_string(), |l| l.state.to_string())
        }));
        row.push(a.online_on.clone().unwrap_or_else(|| "-".into()));
        row.push(faults(a));
        row.push(
            a.resources
                .iter()
                .map(resource)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        row.push(app_notes(a).join("\n"));
        t.add_row(row);
    }
    format!("{t}\n")
}

fn faults(a: &AppLine) -> String {
    let lines: Vec<String> = a
        .nodes
        .iter()
        .filter_map(|l| l.fault.as_ref().map(|f| format!("{}: {f}", l.node)))
        .collect();
    if lines.is_empty() {
        "-".into()
    } else {
        lines.join("\n")
    }
}

/// One resource as `NAME STATE`, with the operation running now, e.g.
/// `web-ip Online` or `web-srv - (start running)`.
pub fn resource(r: &ResourceLine) -> String {
    let state = r.state.map_or("-", resource_state);
    match &r.running {
        Some(op) => format!("{} {state} ({op} running)", r.name),
        None => format!("{} {state}", r.name),
    }
}

fn resource_state(s: ResourceState) -> &'static str {
    match s {
        ResourceState::Online => "Online",
        ResourceState::Offline => "Offline",
        ResourceState::Faulted => "Faulted",
        ResourceState::Unknown => "Unknown",
        ResourceState::Standby => "Standby",
        ResourceState::OnlineWarning => "Online (warning)",
        ResourceState::OfflineFaulted => "Offline (faulted)",
    }
}

/// Maintenance mode, or where the placement is taking the application when that is
/// not where it runs.
fn app_notes(a: &AppLine) -> Vec<String> {
    let mut notes = Vec::new();
    if a.maintenance {
        // Nothing follows the placement in maintenance, and the agent shows no node
        // Online then (every node's state is Maintenance): a placement note would mislead.
        notes.push("MAINTENANCE: no automatic action".to_string());
        return notes;
    }
    match (&a.target, &a.online_on) {
        (Some(t), Some(o)) if t != o => notes.push(format!("switching to {t}")),
        (Some(t), None) => notes.push(format!("placed on {t}")),
        (None, Some(_)) => notes.push("going Offline".to_string()),
        _ => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use hvcluster_common::admin::AppNodeLine;
    use hvcluster_common::application::AppState;

    use super::*;

    fn node(name: &str, id: u32, state: GuestNodeState, heard: Option<u64>) -> GuestNodeLine {
        GuestNodeLine {
            name: name.into(),
            node_id: id,
            me: id == 1,
            state,
            incarnation: if heard.is_some() { 7 } else { 0 },
            last_heard_ms: heard,
        }
    }

    fn on(node: &str, state: AppState, fault: Option<&str>) -> AppNodeLine {
        AppNodeLine {
            node: node.into(),
            state,
            fault: fault.map(str::to_string),
        }
    }

    fn res(name: &str, state: Option<ResourceState>, running: Option<&str>) -> ResourceLine {
        ResourceLine {
            name: name.into(),
            state,
            running: running.map(str::to_string),
        }
    }

    fn sample() -> GuestStatus {
        GuestStatus {
            cluster: "shop".into(),
            node: "vm1".into(),
            node_id: 1,
            incarnation: 3,
            started_unix_ms: 0,
            coordinator: Some("vm1".into()),
            nodes: vec![
                node("vm1", 1, GuestNodeState::Up, Some(0)),
                node("vm2", 2, GuestNodeState::LeftCluster, Some(42_000)),
                node("vm3", 3, GuestNodeState::ComingUp, None),
            ],
            applications: vec![
                AppLine {
                    name: "web".into(),
                    state: AppState::Online,
                    online_on: Some("vm1".into()),
                    target: Some("vm1".into()),
                    maintenance: false,
                    nodes: vec![
                        on("vm1", AppState::Online, None),
                        on("vm2", AppState::Faulted, Some("check of srv: exit 1")),
                    ],
                    resources: vec![
                        res("ip", Some(ResourceState::Online), None),
                        res("srv", Some(ResourceState::OnlineWarning), Some("check")),
                    ],
                },
                AppLine {
                    name: "db".into(),
                    state: AppState::Maintenance,
                    online_on: None,
                    target: Some("vm3".into()),
                    maintenance: true,
                    nodes: vec![
                        on("vm3", AppState::Unknown, None),
                        on("vm1", AppState::Offline, None),
                    ],
                    resources: vec![res("data", None, None)],
                },
            ],
            counters: [("frames_dropped_bad_tag".to_string(), 4)]
                .into_iter()
                .collect(),
            host_link: Some("h1".into()),
        }
    }

    /// The cells of the table row that starts with `first`.
    fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
        let line = table
            .lines()
            .find(|l| {
                l.trim_start_matches('│')
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w == first)
            })
            .unwrap_or_else(|| panic!("no row {first}:\n{table}"));
        line.trim_matches('│')
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn header_names_cluster_node_and_coordinator() {
        let text = status(&sample());
        assert!(
            text.starts_with(
                "guest cluster shop  seen from vm1 (node 1)  coordinator: vm1  host link: to h1\n"
            ),
            "{text}"
        );
        assert!(text.contains("frames dropped: bad_tag 4"), "{text}");
    }

    #[test]
    fn node_rows_show_state_and_reason() {
        let text = status(&sample());
        assert_eq!(
            row(&text, "vm1"),
            ["vm1 *", "1", "UP", "-", "this node"],
            "{text}"
        );
        let vm2 = row(&text, "vm2");
        assert_eq!(
            &vm2[..4],
            ["vm2", "2", "LEFTCLUSTER", "0m42s ago"],
            "{text}"
        );
        assert!(vm2[4].contains("not proved dead"), "{text}");
        assert!(vm2[4].contains("hvctl node down vm2"), "{text}");
        assert_eq!(
            row(&text, "vm3"),
            [
                "vm3",
                "3",
                "COMINGUP",
                "never",
                "not heard since this agent started"
            ],
            "{text}"
        );
    }

    #[test]
    fn reasons_tell_a_returning_node_from_a_proved_dead_one() {
        let mut back = node("vm2", 2, GuestNodeState::Down, Some(150));
        assert_eq!(
            node_reason(&back),
            "back with a new incarnation: UP once it has joined"
        );
        back.last_heard_ms = Some(93_000);
        assert_eq!(node_reason(&back), "proved dead (silent 1m33s)");
        let never = node("vm3", 3, GuestNodeState::Down, None);
        assert_eq!(node_reason(&never), "proved dead (never heard)");
        let joining = node("vm3", 3, GuestNodeState::ComingUp, Some(100));
        assert_eq!(
            node_reason(&joining),
            "heard, not yet for long enough to count"
        );
        let up = node("vm2", 2, GuestNodeState::Up, Some(100));
        assert_eq!(node_reason(&up), "in the cluster: its heartbeats arrive");
    }

    #[test]
    fn application_rows_show_states_per_node_faults_and_resources() {
        let text = status(&sample());
        let header = row(&text, "application");
        assert_eq!(
            header,
            [
                "application",
                "state",
                "vm1",
                "vm2",
                "vm3",
                "online on",
                "faults",
                "resources on vm1",
                "notes"
            ],
            "{text}"
        );
        // vm3 is not in web's node list.
        assert_eq!(
            row(&text, "web"),
            [
                "web",
                "Online",
                "Online",
                "Faulted",
                "-",
                "vm1",
                "vm2: check of srv: exit 1",
                "ip Online"
            ],
            "{text}"
        );
        // The second resource is on the next line of the same row.
        assert!(
            text.contains("srv Online (warning) (check running)"),
            "{text}"
        );
        let db = row(&text, "db");
        assert_eq!(
            db,
            [
                "db",
                "Maintenance",
                "Offline",
                "-",
                "Unknown",
                "-",
                "-",
                "data -",
                "MAINTENANCE: no automatic action"
            ],
            "{text}"
        );
        assert!(!text.contains("placed on vm3"), "{text}");
    }

    #[test]
    fn notes_say_where_the_placement_goes() {
        let mut a = sample().applications[0].clone();
        assert!(app_notes(&a).is_empty());
        a.target = Some("vm2".into());
        assert_eq!(app_notes(&a), ["switching to vm2"]);
        a.target = None;
        assert_eq!(app_notes(&a), ["going Offline"]);
        a.online_on = None;
        a.target = Some("vm2".into());
        assert_eq!(app_notes(&a), ["placed on vm2"]);
        a.maintenance = true;
        assert_eq!(app_notes(&a), ["MAINTENANCE: no automatic action"]);
    }

    #[test]
    fn without_applications_says_where_they_are_configured() {
        let s = GuestStatus {
            applications: vec![],
            ..sample()
        };
        let text = status(&s);
        assert!(
            text.contains("no application is configured ([[application]] in guest.toml)"),
            "{text}"
        );
    }
}
