//! The words a scenario file uses for host, link and application states, forged frames
//! and watched applications.

use hvcluster_common::membership::{FailReason, HostState, LinkState};
use serde::Deserialize;

/// A state an expectation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    /// Up.
    Up,
    /// Joining.
    Joining,
    /// Suspect.
    Suspect,
    /// Failed, with any reason unless `reason` says.
    Failed,
    /// Unknown.
    Unknown,
    /// Left (its agent stopped cleanly).
    Left,
}

/// The reason of a Failed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonName {
    /// Silent for the dead time.
    Silent,
    /// Panic notice.
    Panic,
    /// Reported hung.
    Hung,
}

impl StateName {
    /// Whether `s` is this state (and, for Failed, has `reason` when given).
    pub fn matches(self, s: HostState, reason: Option<ReasonName>) -> bool {
        match (self, s) {
            (StateName::Up, HostState::Up)
            | (StateName::Joining, HostState::Joining)
            | (StateName::Suspect, HostState::Suspect)
            | (StateName::Unknown, HostState::Unknown)
            | (StateName::Left, HostState::Left) => true,
            (StateName::Failed, HostState::Failed(r)) => match reason {
                None => true,
                Some(ReasonName::Silent) => r == FailReason::Silent,
                Some(ReasonName::Panic) => r == FailReason::Panic,
                Some(ReasonName::Hung) => r == FailReason::Hung,
            },
            _ => false,
        }
    }
}

/// A link state an expectation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkName {
    /// Heartbeats arrive.
    Up,
    /// Silent for the dead time.
    Down,
}

impl LinkName {
    /// Whether `l` is this state.
    pub fn matches(self, l: LinkState) -> bool {
        matches!(
            (self, l),
            (LinkName::Up, LinkState::Up) | (LinkName::Down, LinkState::Down)
        )
    }
}

/// What a forged frame gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForgeKind {
    /// Signed with another key.
    BadKey,
    /// A copy of a sender's frame with a sequence number it used long ago.
    Replay,
    /// A sender's earlier incarnation.
    OldIncarnation,
    /// Right key, another cluster's id.
    ForeignCluster,
    /// Random bytes.
    Garbage,
    /// The heartbeats of the last `record-heartbeats` step, `count` of them, one every
    /// 100 ms in the background (the next steps run while they arrive).
    Recorded,
}

/// What must hold while a `host-exec` command runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppWatch {
    /// Guests whose view is polled.
    pub observers: Vec<String>,
    /// The application.
    pub app: String,
    /// The guest it stays Online on (and which stays UP).
    pub online_on: String,
}
