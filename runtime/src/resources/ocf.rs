//! OCF resources: any OCF resource agent, run with `start`, `stop` and `monitor` and
//! its parameters as `OCF_RESKEY_*`. Timeouts and the monitor interval not given in
//! guest.toml come from the agent's meta-data.

use std::path::PathBuf;
use std::time::Duration;

use hvcluster_common::application::outcome::{ocf_monitor_state, OpKind, OpOutcome, ResourceState};
use hvcluster_common::config::guest::{ResourceConfig, DEFAULT_OCF_ROOT};
use tokio::process::Command;

use super::{execute, failed, OpRequest};
use crate::child::run_bounded_keeping;

/// Most meta-data read from an agent.
const META_DATA_BYTES: usize = 1 << 20;

/// Bound on reading an agent's meta-data.
const META_DATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent program of an OCF resource: `OCF_ROOT/resource.d/PROVIDER/TYPE`.
pub(super) fn agent_path(r: &ResourceConfig) -> Result<PathBuf, String> {
    let agent = r.agent.as_deref().unwrap_or_default();
    let (provider, kind) = agent
        .split_once('/')
        .filter(|(p, t)| !p.is_empty() && !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| format!("{}: agent {agent:?} is not PROVIDER/TYPE", r.name))?;
    Ok(ocf_root(r).join("resource.d").join(provider).join(kind))
}

fn ocf_root(r: &ResourceConfig) -> PathBuf {
    r.ocf_root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OCF_ROOT))
}

/// The agent run with `action` and the OCF environment.
fn command(
    r: &ResourceConfig,
    instance: &str,
    action: &str,
    timeout: Duration,
) -> Result<Command, String> {
    let path = agent_path(r)?;
    let (provider, kind) = r
        .agent
        .as_deref()
        .unwrap_or_default()
        .split_once('/')
        .unwrap_or_default();
    let mut c = Command::new(path);
    c.arg(action)
        .env("OCF_ROOT", ocf_root(r))
        .env("OCF_RA_VERSION_MAJOR", "1")
        .env("OCF_RA_VERSION_MINOR", "1")
        .env("OCF_RESOURCE_INSTANCE", instance)
        .env("OCF_RESOURCE_PROVIDER", provider)
        .env("OCF_RESOURCE_TYPE", kind)
        .env(
            "OCF_RESKEY_CRM_meta_timeout",
            timeout.as_millis().to_string(),
        );
    for (k, v) in &r.params {
        c.env(format!("OCF_RESKEY_{k}"), v);
    }
    Ok(c)
}

/// Runs `start`, `stop` or `monitor` of the agent.
pub(super) async fn run(request: &OpRequest) -> OpOutcome {
    let r = &request.resource;
    let action = match request.kind {
        OpKind::Start => "start",
        OpKind::Stop => "stop",
        OpKind::Check => "monitor",
        OpKind::StartStandby => {
            return OpOutcome::Failed {
                code: None,
                detail: format!("{}/{}: OCF resources have no standby", request.app, r.name),
            }
        }
    };
    let instance = format!("{}-{}", request.app, r.name);
    let command = match command(r, &instance, action, request.timeout()) {
        Ok(c) => c,
        Err(detail) => return OpOutcome::Failed { code: None, detail },
    };
    let run = match execute(request, command).await {
        Ok(run) => run,
        Err(outcome) => return outcome,
    };
    match (request.kind, run.exit) {
        (OpKind::Check, Some(code)) => OpOutcome::Done(ocf_monitor_state(code)),
        (OpKind::Start, Some(0)) => OpOutcome::Done(ResourceState::Online),
        (OpKind::Stop, Some(0)) => OpOutcome::Done(ResourceState::Offline),
        _ => failed(request, &run),
    }
}

/// Timeouts and monitor interval from the agent's meta-data, where guest.toml does not
/// give them.
pub(super) async fn fill_defaults(r: &mut ResourceConfig) -> Result<(), String> {
    if r.start_timeout_s.is_some()
        && r.stop_timeout_s.is_some()
        && r.check_timeout_s.is_some()
        && r.check_interval_s.is_some()
    {
        return Ok(());
    }
    let command = command(r, "meta-data", "meta-data", META_DATA_TIMEOUT)?;
    let run = run_bounded_keeping(command, None, META_DATA_TIMEOUT, META_DATA_BYTES)
        .await
        .map_err(|e| {
            format!(
                "cannot run {}: {e}",
                agent_path(r).unwrap_or_default().display()
            )
        })?;
    if run.exit != Some(0) {
        return Err(format!("meta-data exited with {:?}", run.exit));
    }
    let defaults = MetaDefaults::parse(&run.stdout_tail)?;
    r.start_timeout_s = r.start_timeout_s.or(defaults.start_timeout_s);
    r.stop_timeout_s = r.stop_timeout_s.or(defaults.stop_timeout_s);
    r.check_timeout_s = r.check_timeout_s.or(defaults.monitor_timeout_s);
    r.check_interval_s = r.check_interval_s.or(defaults.monitor_interval_s);
    Ok(())
}

/// What an agent's meta-data says about its actions.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct MetaDefaults {
    pub start_timeout_s: Option<u64>,
    pub stop_timeout_s: Option<u64>,
    pub monitor_timeout_s: Option<u64>,
    pub monitor_interval_s: Option<u64>,
}

impl MetaDefaults {
    /// Reads the `<actions>` of an OCF meta-data document.
    pub(super) fn parse(xml: &str) -> Result<MetaDefaults, String> {
        let doc = roxmltree::Document::parse_with_options(
            xml,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .map_err(|e| format!("meta-data is not XML: {e}"))?;
        let mut out = MetaDefaults::default();
        for action in doc.descendants().filter(|n| n.has_tag_name("action")) {
            let secs = |attr| action.attribute(attr).and_then(parse_duration_s);
            match action.attribute("name") {
                Some("start") => out.start_timeout_s = secs("timeout"),
                Some("stop") => out.stop_timeout_s = secs("timeout"),
                // The first monitor listed is the plain one (agents list role-specific
                // ones after it).
                Some("monitor") if out.monitor_timeout_s.is_none() => {
                    out.monitor_timeout_s = secs("timeout");
                    out.monitor_interval_s = secs("interval").filter(|&s| s > 0);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// `20s`, `20`, `2min`, `1m`, `500ms` (rounded up to whole seconds), `1h`.
pub(super) fn parse_duration_s(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "s" | "sec" => Some(n),
        "ms" | "msec" => Some(n.div_ceil(1000)),
        "m" | "min" => n.checked_mul(60),
        "h" | "hr" => n.checked_mul(3600),
        _ => None,
    }
}
