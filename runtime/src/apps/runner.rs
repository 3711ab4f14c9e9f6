//! What an agent does for its application engine besides deciding: resource operations
//! run as child processes (their outcome comes back to the driver loop) and the
//! application state written off the loop. Used through [`super::Apps`] by the host
//! agent and directly by the guest agent, whose core owns its engine.

use std::path::PathBuf;

use hvcluster_common::application::outcome::OpKind;
use hvcluster_common::application::{OpOutcome, Persistent, ResourceOp};
use hvcluster_common::config::guest::ApplicationConfig;
use serde_json::json;

use super::state;
use crate::member::Member;
use crate::resources::{self, OpRequest};
use crate::state_writer::StateWriter;

/// Runs the resource operations of an agent's applications and saves their state.
#[derive(Debug)]
pub struct AppRunner {
    applications: Vec<ApplicationConfig>,
    state_file: PathBuf,
    /// Writes the state file off the driver loop.
    writer: StateWriter,
    env: Vec<(String, String)>,
}

impl AppRunner {
    /// A runner for `applications` whose state goes to `state_file`; failed writes are
    /// counted and reported through `member`'s event log. `env` is added to the
    /// environment of every resource operation.
    pub fn new<I, P>(
        member: &Member<I, P>,
        applications: Vec<ApplicationConfig>,
        state_file: PathBuf,
        env: Vec<(String, String)>,
    ) -> Self {
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
        AppRunner {
            applications,
            state_file,
            writer,
            env,
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

    /// Runs `op` in a task; its outcome comes back to the driver loop as
    /// `done(id, outcome)`. An operation naming no configured resource is ignored.
    pub fn run<I: Send + 'static, P>(
        &self,
        op: ResourceOp,
        member: &Member<I, P>,
        done: fn(u64, OpOutcome) -> I,
    ) {
        let Some(app) = self.applications.get(op.app) else {
            return;
        };
        let Some(resource) = app.resources.get(op.resource) else {
            return;
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

    /// Saves `persistent` (written by the state writer thread, which reports a failure).
    pub fn save<I, P>(&mut self, persistent: &Persistent, member: &Member<I, P>) {
        match state::encode(persistent) {
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
        }
    }
}
