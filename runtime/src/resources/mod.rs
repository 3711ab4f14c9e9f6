//! Resource runners: Cmdline, OCF and virtual-IP resources as child processes, for
//! userApplications.
//!
//! Every operation runs as a child in its own process group, bounded by the resource's
//! timeout for that operation (the whole group is killed when it runs past it), and its
//! output goes to the agent's log. A runner never panics on what a script does: every
//! way it can end is an [`OpOutcome`].

mod cmdline;
mod ocf;
mod vip;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod vip_netns_tests;

use std::path::Path;
use std::time::Duration;

use crate::child::{last_line, run_bounded, run_leaving_helpers, ChildRun};
use hvcluster_common::application::outcome::{OfflineReason, OpKind, OpOutcome};
use hvcluster_common::config::guest::{
    ApplicationConfig, ResourceConfig, ResourceKind, DEFAULT_RESOURCE_TIMEOUT_S,
};
use tokio::process::Command;

/// One operation to run.
#[derive(Debug, Clone)]
pub struct OpRequest {
    /// Application the resource belongs to.
    pub app: String,
    /// This node's name.
    pub node: String,
    /// The resource, with defaults filled in.
    pub resource: ResourceConfig,
    /// What to do.
    pub kind: OpKind,
    /// For a stop: why.
    pub reason: Option<OfflineReason>,
    /// Part of an automatic restart.
    pub auto_recover: bool,
    /// Ordered by an operator.
    pub forced: bool,
    /// More environment for the command (the host agent's `HV_GUEST_URI` and
    /// `HV_ADMIN_SOCKET`, for `hv-guest`).
    pub env: Vec<(String, String)>,
}

impl OpRequest {
    /// The timeout of this operation.
    pub fn timeout(&self) -> Duration {
        let r = &self.resource;
        let secs = match self.kind {
            OpKind::Start | OpKind::StartStandby => r.start_timeout_s,
            OpKind::Stop => r.stop_timeout_s,
            OpKind::Check => r.check_timeout_s,
        };
        Duration::from_secs(secs.unwrap_or(DEFAULT_RESOURCE_TIMEOUT_S))
    }

    fn label(&self) -> String {
        format!(
            "{}/{} {}",
            self.app,
            self.resource.name,
            self.kind.script_type().to_ascii_lowercase()
        )
    }
}

/// Runs one operation to its outcome.
pub async fn run(request: OpRequest) -> OpOutcome {
    let outcome = match request.resource.kind {
        ResourceKind::Cmdline => cmdline::run(&request).await,
        ResourceKind::Ocf => ocf::run(&request).await,
        ResourceKind::Vip => vip::run(&request).await,
    };
    match &outcome {
        OpOutcome::Done(state) => {
            tracing::debug!(op = %request.label(), state = ?state, "resource operation done")
        }
        OpOutcome::Failed { code, detail } => {
            tracing::warn!(op = %request.label(), code = ?code, %detail, "resource operation failed")
        }
        OpOutcome::TimedOut => tracing::warn!(
            op = %request.label(),
            timeout_s = request.timeout().as_secs(),
            "resource operation timed out; its process group was killed"
        ),
    }
    outcome
}

/// Fills in what the configuration leaves to the resource (OCF timeouts and monitor
/// interval from the agent's meta-data). Returns a warning per resource whose defaults
/// could not be read; those keep the built-in defaults.
pub async fn fill_defaults(applications: &mut [ApplicationConfig]) -> Vec<String> {
    let mut warnings = Vec::new();
    for app in applications {
        for resource in &mut app.resources {
            if resource.kind == ResourceKind::Ocf {
                if let Err(e) = ocf::fill_defaults(resource).await {
                    warnings.push(format!(
                        "{}/{}: cannot read the agent's meta-data ({e}); using timeouts of \
                         {DEFAULT_RESOURCE_TIMEOUT_S} s",
                        app.name, resource.name
                    ));
                }
            }
        }
    }
    warnings
}

/// Runs a prepared command for `request` and logs what it printed. `Err` is the
/// outcome when it could not run or timed out.
async fn execute(request: &OpRequest, mut command: Command) -> Result<ChildRun, OpOutcome> {
    command.envs(request.env.iter().map(|(k, v)| (k, v)));
    let program = command.as_std().get_program().to_owned();
    // A start may launch a daemon that keeps running (and holds the output pipes).
    let run = match request.kind {
        OpKind::Start | OpKind::StartStandby => {
            run_leaving_helpers(command, request.timeout()).await
        }
        OpKind::Stop | OpKind::Check => run_bounded(command, None, request.timeout()).await,
    };
    let run = run.map_err(|e| OpOutcome::Failed {
        code: None,
        detail: format!(
            "cannot run {} ({}): {e}",
            request.label(),
            Path::new(&program).display()
        ),
    })?;
    log_output(request, &run);
    if run.timed_out {
        return Err(OpOutcome::TimedOut);
    }
    Ok(run)
}

/// Output goes into the agent's log, one record per stream.
fn log_output(request: &OpRequest, run: &ChildRun) {
    let label = request.label();
    for (stream, text) in [("stdout", &run.stdout_tail), ("stderr", &run.stderr_tail)] {
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(op = %label, stream, exit = ?run.exit, elapsed_ms = run.elapsed.as_millis() as u64, "{text}");
        }
    }
}

/// The outcome of a start or stop that exited with `run.exit` other than success.
fn failed(request: &OpRequest, run: &ChildRun) -> OpOutcome {
    let why = last_line(&run.stderr_tail)
        .or_else(|| last_line(&run.stdout_tail))
        .map(|l| format!(": {}", l.chars().take(300).collect::<String>()))
        .unwrap_or_default();
    let how = match run.exit {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".to_string(),
    };
    OpOutcome::Failed {
        code: run.exit,
        detail: format!("{} failed ({how}){why}", request.label()),
    }
}
