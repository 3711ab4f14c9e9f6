//! Operator-facing wording of application events and the status lines of applications.

use hvcluster_common::admin::{AppLine, AppNodeLine, ResourceLine};
use hvcluster_common::application::{AppEvent, AppState, Engine, PlacementReason};
use hvcluster_common::config::NodeId;

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

/// One status line per application, from the engine's view; `name` names a node.
pub fn app_lines(engine: &Engine, name: impl Fn(NodeId) -> String) -> Vec<AppLine> {
    engine
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
                target: a.placement.target.map(&name),
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
        .collect()
}
