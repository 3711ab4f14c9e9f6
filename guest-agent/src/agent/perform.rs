//! What the guest core asks of the applications: resource operations run as child
//! processes (their outcome comes back to the driver loop) and the application state
//! written off the loop.

use std::path::PathBuf;

use hvcluster_common::application::outcome::OpKind;
use hvcluster_common::application::{GuestHeartbeat, Persistent, ResourceOp};
use hvcluster_common::config::guest::ApplicationConfig;
use hvcluster_runtime::apps::state;
use hvcluster_runtime::member::Member;
use hvcluster_runtime::resources::{self, OpRequest};
use hvcluster_runtime::state_writer::StateWriter;
use serde_json::json;

use super::Input;

/// Runs the operations of the applications of `guest.toml` and saves their state.
#[derive(Debug)]
pub(super) struct Runner {
    applications: Vec<ApplicationConfig>,
    state_file: PathBuf,
    /// Writes the state file off the driver loop.
    writer: StateWriter,
}

impl Runner {
    /// A runner for `applications` whose state goes to `state_file`; failed writes are
    /// counted and reported through `member`'s event log.
    pub(super) fn new(
        member: &Member<Input, GuestHeartbeat>,
        applications: Vec<ApplicationConfig>,
        state_file: PathBuf,
    ) -> Runner {
        let (events, node) = (member.events.clone(), member.own_name.clone());
        let counters = member.counters.clone();
        let writer = StateWriter::spawn(
            "hv-state",
            Box::new(move |file, _, result| {
                if let Err(e) = result {
                    tracing::error!(file = %file.display(), cause = %e, "cannot save the application state");
                    // Counted each time, reported at most once every 10 s.
                    hvcluster_runtime::member::record_limited(
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
        Runner {
            applications,
            state_file,
            writer,
        }
    }

    /// Runs `op` in a task; its outcome comes back as [`Input::OpDone`].
    pub(super) fn run(&self, op: ResourceOp, member: &Member<Input, GuestHeartbeat>) {
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
            env: Vec::new(),
        };
        let tx = member.tx.clone();
        let id = op.id;
        tokio::spawn(async move {
            let outcome = resources::run(request).await;
            let _ = tx.send(Input::OpDone { id, outcome }).await;
        });
    }

    /// Saves `persistent` (written by the state writer thread, which reports a failure).
    pub(super) fn save(&mut self, persistent: &Persistent, member: &Member<Input, GuestHeartbeat>) {
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
