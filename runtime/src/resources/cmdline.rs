//! Cmdline resources: start, stop and check commands run through `/bin/sh -c` under
//! the Cmdline contract (see docs/guest-configuration.md).

use hvcluster_common::application::outcome::{
    cmdline_check_state, OpKind, OpOutcome, ResourceState,
};
use hvcluster_common::config::guest::CmdlineFlag;
use tokio::process::Command;

use super::{execute, failed, OpRequest};

/// Runs the command of `request`'s operation.
pub(super) async fn run(request: &OpRequest) -> OpOutcome {
    let r = &request.resource;
    let script = match request.kind {
        OpKind::Start | OpKind::StartStandby => &r.start,
        OpKind::Stop => &r.stop,
        OpKind::Check => &r.check,
    };
    let Some(script) = script.as_deref() else {
        return OpOutcome::Failed {
            code: None,
            detail: format!(
                "{}/{}: no {} command is configured",
                request.app,
                r.name,
                request.kind.script_type().to_ascii_lowercase()
            ),
        };
    };
    let run = match execute(request, command(request, script)).await {
        Ok(run) => run,
        Err(outcome) => return outcome,
    };
    match (request.kind, run.exit) {
        (OpKind::Check, Some(code)) => OpOutcome::Done(cmdline_check_state(
            code,
            r.flags.contains(&CmdlineFlag::AllExitCodes),
        )),
        (OpKind::Start, Some(0)) => OpOutcome::Done(ResourceState::Online),
        (OpKind::StartStandby, Some(0)) => OpOutcome::Done(ResourceState::Standby),
        (OpKind::Stop, Some(0)) => OpOutcome::Done(ResourceState::Offline),
        _ => failed(request, &run),
    }
}

/// `/bin/sh -c SCRIPT` with the Cmdline environment.
pub(super) fn command(request: &OpRequest, script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(script);
    c.env("HV_APPLICATION", &request.app)
        .env("HV_NODENAME", &request.node)
        .env("HV_RESOURCE", &request.resource.name)
        .env("HV_SCRIPT_TYPE", request.kind.script_type())
        .env(
            "HV_AUTORECOVER",
            if request.auto_recover { "1" } else { "0" },
        )
        .env("HV_FORCED_REQUEST", if request.forced { "1" } else { "0" });
    match request.reason.filter(|_| request.kind == OpKind::Stop) {
        Some(reason) => c.env("HV_OFFLINE_REASON", reason.env_value()),
        None => c.env_remove("HV_OFFLINE_REASON"),
    };
    c
}
