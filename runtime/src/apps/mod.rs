//! userApplications run by an agent: the application engine, the resource operations
//! it asks for, its state file and the wording of its events and status lines. Shared
//! by the guest agent (`guest.toml`) and the host agent (host-side applications of
//! `cluster.toml`, such as a VM made highly available with `hv-guest` resources).

mod describe;
mod runner;
pub mod set_aside;
pub mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hvcluster_common::application::{AppAction, AppSpec, Engine, OpOutcome};
use hvcluster_common::config::guest::ApplicationConfig;
use hvcluster_common::config::NodeId;
use serde_json::json;

pub use describe::{app_event, app_lines};
pub use runner::AppRunner;

use crate::member::Member;

/// The applications of one agent with what runs them.
#[derive(Debug)]
pub struct Apps {
    /// The engine deciding where each application runs.
    pub engine: Engine,
    /// Runs its resource operations and saves its state.
    runner: AppRunner,
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
        let runner = AppRunner::new(member, applications, state_file, env);
        Apps {
            engine,
            runner,
            announce: false,
        }
    }

    /// How many applications there are.
    pub fn len(&self) -> usize {
        self.runner.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.runner.is_empty()
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
                AppAction::Run(op) => self.runner.run(op, member, done),
                AppAction::Event(e) => {
                    let (subject, kind, message) = app_event(&e, |n| member.name(n));
                    member.events.record(
                        Some(&subject),
                        kind,
                        message,
                        serde_json::to_value(&e).unwrap_or_default(),
                    );
                }
                AppAction::Persist => self.runner.save(&self.engine.persistent(), member),
                AppAction::Announce => self.announce = true,
                AppAction::KillNode(n) => kills.push(n),
            }
        }
        kills
    }

    /// Longest wait for the applications to stop when the agent shuts down.
    pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(900);
}
