//! Running real fence agents the way a host agent does: from inside a host's namespace,
//! with their parameters as `name=value` lines on stdin and no arguments.
//!
//! Exit codes of every fence agent: 0 success (for `status`: powered on), 1 failure,
//! 2 `status` found the target powered off.

use super::{spawn, Lab, NsTarget};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where Debian's fence-agents package installs the IPMI agent.
pub const FENCE_IPMILAN: &str = "/usr/sbin/fence_ipmilan";
/// Where Debian's fence-agents package installs the dummy agent.
pub const FENCE_DUMMY: &str = "/usr/sbin/fence_dummy";
/// fence_ipmilan's `power_timeout`: it kills each ipmitool call after this many seconds,
/// which is what makes it give up on a dead BMC (ipmitool alone retries for ~20 s).
pub const IPMI_POWER_TIMEOUT_SECS: u32 = 2;
/// fence_dummy's `power_timeout` when it is meant to fail: its off/on wait that long.
const DUMMY_FAIL_TIMEOUT_SECS: u32 = 1;

/// One finished fence agent run.
#[derive(Debug, Clone)]
pub struct FenceRun {
    /// Exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// What it printed (`Status: ON`, `Success: Powered OFF`, ...).
    pub stdout: String,
    /// Its log output (errors, Python warnings).
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl FenceRun {
    /// Exit 0: the action succeeded (for `status`, the target is on).
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// Exit 2: `status` found the target powered off.
    pub fn reports_off(&self) -> bool {
        self.code == Some(2)
    }
}

/// A parameter list as the agent reads it on stdin: one `name=value` per line.
pub fn stdin_text(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Parameters of a fence_dummy device that always succeeds (`succeed`) or always fails.
///
/// Succeeding: `type=file` keeps the "power" in `status_file` (one per device: the default
/// file is shared machine-wide), so off, on and reboot succeed and status follows them.
/// Failing: `type=fail` never changes state, so off/on/reboot exit 1 after
/// `power_timeout`; its `status` still exits 0 ("ON").
pub fn fence_dummy_params(
    action: &str,
    succeed: bool,
    status_file: &Path,
) -> Vec<(String, String)> {
    let mut p = vec![("action".to_string(), action.to_string())];
    if succeed {
        p.push(("type".into(), "file".into()));
        p.push(("status_file".into(), status_file.display().to_string()));
    } else {
        p.push(("type".into(), "fail".into()));
        p.push(("power_timeout".into(), DUMMY_FAIL_TIMEOUT_SECS.to_string()));
    }
    p
}

impl Lab {
    /// The fence_ipmilan parameters that fence `target` through its simulated BMC:
    /// RMCP+ with cipher suite 3, no wait after power commands, and a short
    /// `power_timeout` so a dead BMC fails the run in about two seconds.
    pub fn fence_ipmilan_params(&self, target: &str, action: &str) -> Vec<(String, String)> {
        let (user, password) = self.bmc_credentials(target);
        [
            ("action", action.to_string()),
            ("ip", self.bmc_address(target).to_string()),
            ("username", user),
            ("password", password),
            ("lanplus", "1".into()),
            ("cipher", "3".into()),
            ("power_wait", "0".into()),
            ("power_timeout", IPMI_POWER_TIMEOUT_SECS.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs fence agent `agent` with `params` on stdin from inside `from`'s namespace and
    /// returns how it ended; kills it after `timeout`.
    ///
    /// It runs outside the host's cgroup, so a harness-driven fence neither freezes with a
    /// hung `from` nor dies when `from` itself is fenced.
    pub fn run_fence_agent(
        &self,
        from: &str,
        agent: &Path,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<FenceRun> {
        let ns = self.netns_path(&NsTarget::host(from))?;
        let action = params
            .iter()
            .find(|(k, _)| k == "action")
            .map_or("?", |(_, v)| v.as_str());
        let started = Instant::now();
        let out = spawn::run_tool(&ns, Command::new(agent), Some(&stdin_text(params)), timeout)
            .with_context(|| format!("running {} action={action} from {from}", agent.display()))?;
        Ok(FenceRun {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
            elapsed: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_one_assignment_per_line() {
        let p = vec![
            ("action".to_string(), "off".to_string()),
            ("ip".to_string(), "198.19.254.103".to_string()),
        ];
        assert_eq!(stdin_text(&p), "action=off\nip=198.19.254.103\n");
    }

    #[test]
    fn dummy_devices_pick_their_type() {
        let ok = stdin_text(&fence_dummy_params("off", true, Path::new("/x/s")));
        assert_eq!(ok, "action=off\ntype=file\nstatus_file=/x/s\n");
        let bad = stdin_text(&fence_dummy_params("off", false, Path::new("/x/s")));
        assert_eq!(bad, "action=off\ntype=fail\npower_timeout=1\n");
    }
}
