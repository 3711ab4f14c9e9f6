//! Fencing configuration: `[fencing]`, `[[fence_device]]` and each host's
//! `fence_levels`.
//!
//! ```toml
//! [[fence_device]]
//! name = "ipmi-hv1"
//! kind = "agent"
//! agent = "fence_ipmilan"
//! params = { ip = "10.0.0.101", username = "admin", lanplus = "1" }
//! password_file = "ipmi-hv1.pass"
//!
//! [[host]]
//! name = "hv1"
//! fence_levels = [["ipmi-hv1"], ["pdu-a-hv1", "pdu-b-hv1"]]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default time one fence agent run may take.
pub const DEFAULT_FENCE_TIMEOUT_MS: u64 = 30_000;
/// Default pause before the next round when every level failed.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 2_000;
/// Default longest pause between rounds.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 60_000;
/// Default delay of the lower-priority side of a two-node fence race.
pub const DEFAULT_RACE_DELAY_MS: u64 = 5_000;
/// Default wait for a kdump notice before a kdump level gives way to the next.
pub const DEFAULT_KDUMP_WAIT_MS: u64 = 10_000;

/// `[fencing]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FencingSection {
    /// Pause before the first retry round once every level failed; doubles each round.
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
    /// Longest pause between retry rounds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// In a two-node split, how long the side with the lower survival priority waits
    /// before it shoots; must exceed the time fencing takes.
    #[serde(default = "default_race_delay")]
    pub race_delay_ms: u64,
}

impl Default for FencingSection {
    fn default() -> Self {
        FencingSection {
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            race_delay_ms: DEFAULT_RACE_DELAY_MS,
        }
    }
}

/// What a fence device is.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A program speaking the fence-agents stdin API (fence_ipmilan, fence_redfish, ...).
    Agent,
    /// A kdump panic notice from the host counts as proof it is down.
    Kdump,
    /// Nothing automatic: an operator confirms the host is off.
    Manual,
}

/// `[[fence_device]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FenceDevice {
    /// Name used in `fence_levels`.
    pub name: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// For `agent`: program name (looked up in PATH) or path.
    #[serde(default)]
    pub agent: Option<String>,
    /// For `agent`: parameters passed as `key=value` lines (besides `action`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// For `agent`: file whose first line is passed as `password=`. Relative to the
    /// configuration file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// For `agent`: time one run may take before its process group is killed.
    #[serde(default = "default_fence_timeout")]
    pub timeout_ms: u64,
    /// For `agent`: extra attempts after a failed run, within the level.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// For `kdump`: how long to wait for a notice before the next level runs.
    #[serde(default = "default_kdump_wait")]
    pub wait_ms: u64,
}

fn default_backoff() -> u64 {
    DEFAULT_RETRY_BACKOFF_MS
}
fn default_max_backoff() -> u64 {
    DEFAULT_MAX_BACKOFF_MS
}
fn default_race_delay() -> u64 {
    DEFAULT_RACE_DELAY_MS
}
fn default_fence_timeout() -> u64 {
    DEFAULT_FENCE_TIMEOUT_MS
}
fn default_retries() -> u32 {
    1
}
fn default_kdump_wait() -> u64 {
    DEFAULT_KDUMP_WAIT_MS
}
