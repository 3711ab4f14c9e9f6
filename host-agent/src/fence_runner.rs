//! Runs fence devices of kind `agent`: programs speaking the fence-agents stdin API
//! (fence_ipmilan, fence_redfish, ...).
//!
//! The agent is started without arguments and reads `key=value` lines on stdin, so no
//! secret ever shows in `ps`. Exit codes follow the fence-agents convention: for
//! `status` 0 = ON and 2 = OFF, for every other action 0 = success. Each run is bounded
//! by the device's `timeout_ms`; the agent runs in its own process group and on timeout
//! the whole group is killed, because agents leave helpers (ipmitool, ssh) behind.

#[cfg(test)]
mod tests;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvcluster_common::config::{DeviceKind, FenceDevice};
use tokio::process::Command;
use tokio::time::Instant;

pub use crate::child::TAIL_BYTES;
use crate::child::{last_line, run_bounded};
/// Pause between two `off` attempts of one device.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Directories searched after PATH: fence agents live in sbin, which a daemon's PATH
/// may lack.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];
/// Exit code of `status` when the device reports the power OFF.
const EXIT_OFF: i32 = 2;

/// What one run of a fence agent did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOutcome {
    /// The run succeeded by the action's exit-code rule (for `status`: ON or OFF).
    pub ok: bool,
    /// Exit code; `None` if it never started, was killed by a signal or timed out.
    pub exit: Option<i32>,
    /// Last [`TAIL_BYTES`] of its stdout.
    pub stdout_tail: String,
    /// Last [`TAIL_BYTES`] of its stderr, or why it could not run.
    pub stderr_tail: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// It ran past the device's timeout and its process group was killed.
    pub timed_out: bool,
}

impl AgentOutcome {
    fn failed_to_start(why: String, elapsed: Duration) -> Self {
        AgentOutcome {
            ok: false,
            exit: None,
            stdout_tail: String::new(),
            stderr_tail: why,
            elapsed,
            timed_out: false,
        }
    }

    /// One-line account of a failed run: `(exit 1): <last message>`.
    pub fn summary(&self, timeout_ms: u64) -> String {
        let how = match self.exit {
            _ if self.timed_out => format!("(timed out after {timeout_ms} ms)"),
            Some(code) => format!("(exit {code})"),
            None => "(did not run)".to_string(),
        };
        match last_message(&self.stderr_tail).or_else(|| last_message(&self.stdout_tail)) {
            Some(msg) => format!("{how}: {msg}"),
            None => how,
        }
    }
}

/// The last non-empty line of an agent's output, without the logging prefix
/// (`2026-01-01 10:00:00,123 ERROR: `) fence-agents put before their messages.
fn last_message(text: &str) -> Option<String> {
    let line = last_line(text)?;
    let msg = line.rsplit_once(" ERROR: ").map_or(line, |(_, m)| m.trim());
    Some(msg.chars().take(300).collect())
}

/// Device name, agent and parameters for logs; secret-looking parameters are redacted
/// and the password file is named, never read.
pub fn describe(device: &FenceDevice) -> String {
    let mut out = format!(
        "{} ({}",
        device.name,
        device.agent.as_deref().unwrap_or("no agent")
    );
    for (k, v) in &device.params {
        let key = k.to_ascii_lowercase();
        let secret = ["pass", "secret", "token", "community", "key"]
            .iter()
            .any(|s| key.contains(s));
        out.push_str(&format!(" {k}={}", if secret { "<redacted>" } else { v }));
    }
    if let Some(p) = &device.password_file {
        out.push_str(&format!(" password=<from {}>", p.display()));
    }
    out.push_str(&format!(
        ", timeout {} ms, {} retries)",
        device.timeout_ms, device.retries
    ));
    out
}

/// The text written to the agent's stdin: `action=`, the device's params, `password=`
/// (if given) and `extra`, one `key=value` line each. Agents read these in order, so a
/// later key wins. Fails when a key or value would break the line format, since an
/// embedded newline could smuggle in another action.
pub fn stdin_lines(
    device: &FenceDevice,
    action: &str,
    extra: &[(String, String)],
    password: Option<&str>,
) -> Result<String, String> {
    let mut pairs: Vec<(&str, &str)> = vec![("action", action)];
    pairs.extend(device.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    pairs.extend(password.map(|p| ("password", p)));
    pairs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut text = String::new();
    for (k, v) in pairs {
        if k.is_empty() || k.contains(['=', '\n', '\r']) || v.contains(['\n', '\r']) {
            return Err(format!(
                "{}: parameter {k:?} cannot be passed as a key=value line",
                device.name
            ));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(text)
}

/// First line of the device's password file, if it has one.
fn read_password(device: &FenceDevice) -> Result<Option<String>, String> {
    let Some(path) = &device.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read password file {}: {e}",
            device.name,
            path.display()
        )
    })?;
    let first = text.lines().next().unwrap_or("");
    Ok(Some(first.to_string()))
}

/// Finds the agent program: an absolute path as is, a bare name in PATH, then in
/// /usr/sbin and /sbin.
pub fn resolve_program(agent: &str) -> Result<PathBuf, String> {
    let path = Path::new(agent);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    if agent.is_empty() || agent.contains('/') {
        return Err(format!(
            "agent {agent:?} must be a bare program name or an absolute path"
        ));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    // Empty PATH entries mean the working directory; a fence agent is never taken from there.
    let dirs = std::env::split_paths(&path_var).filter(|d| d.is_absolute());
    dirs.chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(agent))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| format!("agent {agent:?} not found in PATH, /usr/sbin or /sbin"))
}

/// Whether `exit` means success for `action`.
fn exit_ok(action: &str, exit: Option<i32>) -> bool {
    match exit {
        Some(0) => true,
        Some(EXIT_OFF) => action == "status",
        _ => false,
    }
}

/// Runs `device`'s agent once with `action=<action>` plus `extra` lines on stdin,
/// bounded by its timeout.
pub async fn run_agent(
    device: &FenceDevice,
    action: &str,
    extra: &[(String, String)],
) -> AgentOutcome {
    let start = Instant::now();
    let prepared = device
        .agent
        .as_deref()
        .ok_or_else(|| format!("{}: no agent program configured", device.name))
        .and_then(resolve_program)
        .and_then(|prog| Ok((prog, read_password(device)?)))
        .and_then(|(prog, pw)| Ok((prog, stdin_lines(device, action, extra, pw.as_deref())?)));
    let (program, text) = match prepared {
        Ok(p) => p,
        Err(why) => return AgentOutcome::failed_to_start(why, start.elapsed()),
    };
    tracing::debug!(device = %describe(device), action, "running fence agent");
    let timeout = Duration::from_millis(device.timeout_ms);
    match run_bounded(Command::new(&program), Some(&text), timeout).await {
        Ok(run) => AgentOutcome {
            ok: !run.timed_out && exit_ok(action, run.exit),
            exit: run.exit,
            stdout_tail: run.stdout_tail,
            stderr_tail: run.stderr_tail,
            elapsed: start.elapsed(),
            timed_out: run.timed_out,
        },
        Err(e) => {
            let why = format!("{}: cannot start {}: {e}", device.name, program.display());
            AgentOutcome::failed_to_start(why, start.elapsed())
        }
    }
}

/// `off` (with the device's retries), then `status`; Ok only if status reports OFF
/// (exit 2). The error is the detail for the event log and names the device.
pub async fn power_off_confirmed(
    device: &FenceDevice,
    plug: Option<&str>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let name = &device.name;
    if device.kind != DeviceKind::Agent {
        return Err(format!(
            "{name}: a {:?} device is not run by a fence agent",
            device.kind
        ));
    }
    let extra: Vec<(String, String)> = plug
        .map(|p| ("plug".to_string(), p.to_string()))
        .into_iter()
        .collect();
    let attempts = device.retries.saturating_add(1);
    for attempt in 1..=attempts {
        let off = run_agent(device, "off", &extra).await;
        if off.ok {
            break;
        }
        tracing::warn!(device = %name, attempt, attempts, result = %off.summary(device.timeout_ms), "fence off failed");
        if attempt == attempts {
            let tries = if attempts > 1 {
                format!(" after {attempts} attempts")
            } else {
                String::new()
            };
            return Err(format!(
                "{name}: off failed{tries} {}",
                off.summary(device.timeout_ms)
            ));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let status = run_agent(device, "status", &extra).await;
    match status.exit {
        Some(EXIT_OFF) if !status.timed_out => Ok(start.elapsed()),
        Some(0) if !status.timed_out => Err(format!("{name}: reports the host still ON after off")),
        _ => Err(format!(
            "{name}: status after off failed {}",
            status.summary(device.timeout_ms)
        )),
    }
}

/// Every device of a level, concurrently; all must power the host off and confirm.
/// Returns whether all did and a detail naming each device's result.
pub async fn run_level(devices: &[FenceDevice], plug: Option<&str>) -> (bool, String) {
    if devices.is_empty() {
        return (false, "the level names no device".to_string());
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, d) in devices.iter().enumerate() {
        let (d, plug) = (d.clone(), plug.map(str::to_string));
        set.spawn(async move { (i, power_off_confirmed(&d, plug.as_deref()).await) });
    }
    let mut results: Vec<Option<Result<Duration, String>>> = vec![None; devices.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            results[i] = Some(r);
        }
    }
    let mut ok = true;
    let details: Vec<String> = devices
        .iter()
        .zip(results)
        .map(|(d, r)| match r {
            Some(Ok(took)) => format!(
                "{}: off, confirmed OFF in {:.1} s",
                d.name,
                took.as_secs_f64()
            ),
            Some(Err(detail)) => {
                ok = false;
                detail
            }
            None => {
                ok = false;
                format!("{}: the fence task failed", d.name)
            }
        })
        .collect();
    (ok, details.join("; "))
}

/// `monitor` action (for `hvctl fence check`): exit 0 means the device is reachable.
pub async fn monitor(device: &FenceDevice) -> AgentOutcome {
    run_agent(device, "monitor", &[]).await
}
