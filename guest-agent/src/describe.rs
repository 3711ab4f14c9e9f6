//! Operator-facing wording of events, and the status snapshot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hvcluster_common::admin::{
    AppLine, AppNodeLine, GuestNodeLine, GuestNodeState, GuestStatus, ResourceLine,
};
use hvcluster_common::application::{AppEvent, AppState, PlacementReason};
use hvcluster_common::config::NodeId;
use hvcluster_common::membership::MembershipEvent;

use crate::agent::Agent;

/// Subject, kind and message of a membership event worth recording (node states are
/// recorded by the guest node layer instead).
pub fn membership_event(
    e: &MembershipEvent,
    name: impl Fn(NodeId) -> String,
) -> Option<(Option<String>, &'static str, String)> {
    Some(match e {
        MembershipEvent::HostState { .. } | MembershipEvent::Quorum(_) => return None,
        MembershipEvent::Link {
            node,
            interconnect,
            state,
        } => (
            Some(name(*node)),
            "link",
            format!("{}: interconnect {interconnect} {state:?}", name(*node)),
        ),
        MembershipEvent::Incarnation { node, .. } => (
            Some(name(*node)),
            "incarnation",
            format!("{}: its agent restarted", name(*node)),
        ),
        MembershipEvent::MustRejoin { node } => (
            Some(name(*node)),
            "must_rejoin",
            format!("{}: heard again after it left; it must rejoin", name(*node)),
        ),
        MembershipEvent::ConfigMismatch { node } => (
            Some(name(*node)),
            "config_mismatch",
            format!(
                "{}: its guest.toml differs from this node's; its heartbeats are refused \
                 until the files are identical (hvctl config check)",
                name(*node)
            ),
        ),
        MembershipEvent::Stalled { for_ms } => (
            None,
            "stalled",
            format!("this node did not run for {for_ms} ms"),
        ),
        MembershipEvent::Expelled { by } => (
            Some(name(*by)),
            "expelled",
            format!("{} declared this node failed; rejoining", name(*by)),
        ),
    })
}

fn reason_words(r: PlacementReason) -> &'static str {
    match r {
        PlacementReason::None => "no placement",
        PlacementReason::Startup => "AutoStartUp",
        PlacementReason::Operator => "operator",
        PlacementReason::Offline => "operator offline",
        PlacementReason::ResourceFailure => "resource failure",
        PlacementReason::HostFailure => "node failure",
        PlacementReason::ShutDown => "agent shutdown",
        PlacementReason::Clear => "fault cleared",
        PlacementReason::Maintenance => "maintenance mode switched",
    }
}

/// Subject (the application), kind and message of an application event.
pub fn app_event(e: &AppEvent, name: impl Fn(NodeId) -> String) -> (String, &'static str, String) {
    match e {
        AppEvent::State { app, from, to } => {
            (app.clone(), "app_state", format!("{app}: {from} -> {to}"))
        }
        AppEvent::Placement {
            app,
            target,
            reason,
            version,
            written_here,
        } => {
            let to = target
                .map(&name)
                .unwrap_or_else(|| "no node (Offline)".into());
            let source = if *written_here {
                "decided here"
            } else {
                "learnt"
            };
            (
                app.clone(),
                "placement",
                format!(
                    "{app}: placed on {to} ({}; version {}.{}, {source})",
                    reason_words(*reason),
                    version.epoch,
                    version.issuer
                ),
            )
        }
        AppEvent::ResourceFault {
            app,
            resource,
            detail,
            action,
        } => (
            app.clone(),
            "resource_fault",
            format!("{app}: resource {resource} failed ({detail}); {action}"),
        ),
        AppEvent::OpFailed {
            app,
            resource,
            op,
            detail,
        } => (
            app.clone(),
            "op_failed",
            format!(
                "{app}: {} of {resource} failed: {detail}",
                op.script_type().to_lowercase()
            ),
        ),
        AppEvent::Waiting { app, why } => {
            (app.clone(), "app_waiting", format!("{app}: waiting: {why}"))
        }
        AppEvent::KillRequested { app, node } => (
            app.clone(),
            "halt",
            format!(
                "{app}: its stop failed on {} (HaltFlag): that node must be killed",
                name(*node)
            ),
        ),
    }
}

/// The agent's answer to `status`.
pub fn status(agent: &Agent) -> GuestStatus {
    let (config, me, node, membership, nodes, engine, counters, started_unix_ms, now) =
        agent.parts();
    let name = |id: NodeId| {
        config
            .node_by_id(id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("node {id}"))
    };
    let peers = membership.peers(now);
    let views = nodes.views();
    let node_lines = config
        .nodes
        .iter()
        .map(|n| {
            if n.node_id == me {
                return GuestNodeLine {
                    name: n.name.clone(),
                    node_id: n.node_id,
                    me: true,
                    state: GuestNodeState::Up,
                    incarnation: membership.incarnation(),
                    last_heard_ms: Some(0),
                };
            }
            let peer = peers.iter().find(|p| p.node == n.node_id);
            let view = views.iter().find(|v| v.id == n.node_id);
            GuestNodeLine {
                name: n.name.clone(),
                node_id: n.node_id,
                me: false,
                state: view.map(|v| v.state).unwrap_or(GuestNodeState::ComingUp),
                incarnation: peer.and_then(|p| p.incarnation).unwrap_or(0),
                last_heard_ms: peer.and_then(|p| p.silent_for_ms),
            }
        })
        .collect();
    let applications = engine
        .views()
        .into_iter()
        .map(|a| {
            let online_on = a
                .per_node
                .iter()
                .find(|(_, s, _)| matches!(s, AppState::Online | AppState::Warning))
                .map(|(n, _, _)| name(*n));
            let states: Vec<AppState> = a.per_node.iter().map(|(_, s, _)| *s).collect();
            let state = if a.placement.maintenance {
                AppState::Maintenance
            } else if let Some(s) = states
                .iter()
                .find(|s| matches!(s, AppState::Online | AppState::Warning))
            {
                *s
            } else if states.contains(&AppState::Wait) {
                AppState::Wait
            } else if states.contains(&AppState::Inconsistent) {
                AppState::Inconsistent
            } else if states.contains(&AppState::Faulted) {
                AppState::Faulted
            } else if states.contains(&AppState::Standby) {
                AppState::Standby
            } else {
                AppState::Offline
            };
            AppLine {
                name: a.name.clone(),
                state,
                online_on,
                target: a.placement.target.map(name),
                maintenance: a.placement.maintenance,
                nodes: a
                    .per_node
                    .iter()
                    .map(|(n, s, fault)| AppNodeLine {
                        node: name(*n),
                        state: *s,
                        fault: fault.clone(),
                    })
                    .collect(),
                resources: a
                    .resources
                    .iter()
                    .map(|(r, s, op)| ResourceLine {
                        name: r.clone(),
                        state: *s,
                        running: op.map(|k| k.script_type().to_lowercase()),
                    })
                    .collect(),
            }
        })
        .collect();
    let _ = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    GuestStatus {
        cluster: config.cluster.name.clone(),
        node: node.to_string(),
        node_id: me,
        incarnation: membership.incarnation(),
        started_unix_ms,
        coordinator: Some(name(engine.coordinator())),
        nodes: node_lines,
        applications,
        counters: counters.snapshot(),
        host_link: None,
    }
}
