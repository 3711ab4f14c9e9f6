//! userApplications run by an agent: the application engine, the resource operations
//! it asks for, its state file and the wording of its events and status lines. Shared
//! by the guest agent (`guest.toml`) and the host agent (host-side applications of
//! `cluster.toml`, such as a VM made highly available with `hv-guest` resources).

mod describe;
pub mod set_aside;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvcluster_common::application::outcome::OpKind;
use hvcluster_common::application::{AppAction, AppSpec, Engine, OpOutcome};
use hvcluster_common::config::guest::ApplicationConfig;
use hvcluster_common::config::NodeId;
use serde_json::json;

pub use describe::{app_event, app_lines};

use crate::member::Member;
use crate::resources::{self, OpRequest};
use crate::state_writer::StateWriter;

/// The applications of one agent with what runs them.
#[derive(Debug)]
pub struct Apps {
    /// The engine deciding where each application runs.
    pub engine: Engine,
    applications: Vec<ApplicationConfig>,
    state_file: PathBuf,
    /// Writes the state file off the driver loop.
    writer: StateWriter,
    env: Vec<(String, String)>,
    /// Placements or reports changed: a heartbeat should go out now.
    pub announce: bool,
}

impl Apps {
    /// Starts the engine of node `me` for `applications` (validated; `id_of` turns a
    /// node name into its id) from the state kept in `state_dir`. `names` name every
    /// node; `env` is added to the environment of every resource operation.
    pub fn open<I, P>(
        member: &Member<I, P>,
        applications: Vec<ApplicationConfig>,
        id_of: impl Fn(&str) -> Option<NodeId>,
        state_dir: &Path,
        names: BTreeMap<NodeId, String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let state_file = state::path(state_dir);
        let (persistent, problem) = state::load(&state_file);
        if let Some(problem) = problem {
            let node = &member.own_name;
            member
                .events
                .record(Some(node), "state_unreadable", problem, json!({}));
        }
        let specs = AppSpec::from_applications(&applications, id_of);
        let mut engine = Engine::new(member.me, specs, &persistent, member.now());
        engine.set_names(names);
        let (events, node) = (member.events.clone(), member.own_name.clone());
        let counters = member.counters.clone();
        let writer = StateWriter::spawn(
            "hv-state",
            Box::new(move |file, _, result| {
                if let Err(e) = result {
                    tracing::error!(file = %file.display(), cause = %e, "cannot save the application state");
                    // Counted each time, reported at most once every 10 s.
                    crate::member::record_limited(
                        &counters,
                        &events,
                        "state_not_saved",
                        (Some(&node), "state_not_saved"),
                        |n| {
                            format!(
                                "cannot save the application state to {}: {e}; the next \
                                 change writes it again (until then a restart forgets the \
                                 placements changed since){}",
                                file.display(),
                                if n > 1 {
                                    format!(" ({n} failed writes since the last report)")
                                } else {
                                    String::new()
                                }
                            )
                        },
                        json!({ "file": file.display().to_string() }),
                    );
                }
            }),
        );
        Apps {
            engine,
            applications,
            state_file,
            writer,
            env,
            announce: false,
        }
    }

    /// How many applications there are.
    pub fn len(&self) -> usize {
        self.applications.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.applications.is_empty()
    }

    /// Performs what the engine returned: runs resource operations (their outcome comes
    /// back to the driver loop as `done(id, outcome)`), records events, saves the state.
    /// Returns the nodes the engine asks to have killed (HaltFlag), for the caller.
    pub fn perform<I: Send + 'static, P>(
        &mut self,
        actions: Vec<AppAction>,
        member: &mut Member<I, P>,
        done: fn(u64, OpOutcome) -> I,
    ) -> Vec<NodeId> {
        let mut kills = Vec::new();
        for action in actions {
            match action {
                AppAction::Run(op) => {
                    let Some(app) = self.applications.get(op.app) else {
                        continue;
                    };
                    let Some(resource) = app.resources.get(op.resource) else {
                        continue;
                    };
                    member.counters.bump("resource_ops");
                    if op.kind == OpKind::Check {
                        tracing::debug!(app = %app.name, resource = %resource.name, "resource check");
                    } else {
                        tracing::info!(app = %app.name, resource = %resource.name, op = ?op.kind, reason = ?op.reason, "resource operation");
                    }
                    let request = OpRequest {
                        app: app.name.clone(),
                        node: member.own_name.clone(),
                        resource: resource.clone(),
                        kind: op.kind,
                        reason: op.reason,
                        auto_recover: op.auto_recover,
                        forced: false,
                        env: self.env.clone(),
                    };
                    let tx = member.tx.clone();
                    let id = op.id;
                    tokio::spawn(async move {
                        let outcome = resources::run(request).await;
                        let _ = tx.send(done(id, outcome)).await;
                    });
                }
                AppAction::Event(e) => {
                    let (subject, kind, message) = app_event(&e, |n| member.name(n));
                    member.events.record(
                        Some(&subject),
                        kind,
                        message,
                        serde_json::to_value(&e).unwrap_or_default(),
                    );
                }
                AppAction::Persist => match state::encode(&self.engine.persistent()) {
                    // Written by the state writer thread, which reports a failure.
                    Ok(bytes) => {
                        self.writer.save(&self.state_file, bytes);
                    }
                    Err(e) => {
                        let node = member.own_name.clone();
                        member.events.record(
                            Some(&node),
                            "state_not_saved",
                            format!("cannot encode the application state: {e}"),
                            json!({}),
                        );
                    }
                },
                AppAction::Announce => self.announce = true,
                AppAction::KillNode(n) => kills.push(n),
            }
        }
        kills
    }

    /// Longest wait for the applications to stop when the agent shuts down.
    pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(900);
}
