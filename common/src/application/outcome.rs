//! What a resource operation reports, and how exit codes map to resource states
//! (the Cmdline contract and the OCF contract).

use serde::{Deserialize, Serialize};

/// An operation on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Bring it Online.
    Start,
    /// Bring it to Standby (STANDBYCAPABLE resources only).
    StartStandby,
    /// Take it Offline; must succeed when already stopped.
    Stop,
    /// Find out its state.
    Check,
}

impl OpKind {
    /// `HV_SCRIPT_TYPE` of the operation.
    pub fn script_type(self) -> &'static str {
        match self {
            OpKind::Start => "START",
            OpKind::StartStandby => "START_STANDBY",
            OpKind::Stop => "STOP",
            OpKind::Check => "CHECK",
        }
    }
}

/// Why an application goes Offline on a node (`HV_OFFLINE_REASON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// It switches to another node.
    Switch,
    /// An operator stopped it, or cleared a fault.
    Stop,
    /// One of its resources failed.
    Fault,
    /// The agent shuts down.
    Shut,
    /// It is deactivated.
    Deact,
}

impl OfflineReason {
    /// The value of `HV_OFFLINE_REASON`.
    pub fn env_value(self) -> &'static str {
        match self {
            OfflineReason::Switch => "SWITCH",
            OfflineReason::Stop => "STOP",
            OfflineReason::Fault => "FAULT",
            OfflineReason::Shut => "SHUT",
            OfflineReason::Deact => "DEACT",
        }
    }
}

/// A resource's state as its check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Running.
    Online,
    /// Not running.
    Offline,
    /// Failed.
    Faulted,
    /// The check could not tell.
    Unknown,
    /// Hot standby.
    Standby,
    /// Running, with a warning.
    OnlineWarning,
    /// Not running and failed.
    OfflineFaulted,
}

impl ResourceState {
    /// Whether the state counts as running.
    pub fn is_online(self) -> bool {
        matches!(self, ResourceState::Online | ResourceState::OnlineWarning)
    }

    /// Whether the state is a failure.
    pub fn is_fault(self) -> bool {
        matches!(self, ResourceState::Faulted | ResourceState::OfflineFaulted)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    /// A start or stop succeeded; a check found this state.
    Done(ResourceState),
    /// It failed (non-zero exit of a start or stop, or it could not be run).
    Failed {
        /// Exit code, if the program exited.
        code: Option<i32>,
        /// What happened, for the log.
        detail: String,
    },
    /// It did not finish within its timeout and was killed.
    TimedOut,
}

/// State named by a Cmdline check's exit code. With `all_exit_codes` off, 0 is Online
/// and anything else Offline; with it on, 0 to 6 each name a state and any other code
/// is Unknown.
pub fn cmdline_check_state(code: i32, all_exit_codes: bool) -> ResourceState {
    if !all_exit_codes {
        return if code == 0 {
            ResourceState::Online
        } else {
            ResourceState::Offline
        };
    }
    match code {
        0 => ResourceState::Online,
        1 => ResourceState::Offline,
        2 => ResourceState::Faulted,
        3 => ResourceState::Unknown,
        4 => ResourceState::Standby,
        5 => ResourceState::OnlineWarning,
        6 => ResourceState::OfflineFaulted,
        _ => ResourceState::Unknown,
    }
}

/// State named by an OCF monitor's exit code: 0 running, 7 not running, 8 running as
/// promoted, anything else an error.
pub fn ocf_monitor_state(code: i32) -> ResourceState {
    match code {
        0 | 8 => ResourceState::Online,
        7 => ResourceState::Offline,
        _ => ResourceState::Faulted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each ALLEXITCODES code drives the state it names; off, only 0 is Online.
    #[test]
    fn cmdline_exit_codes_name_their_states() {
        let table = [
            (0, ResourceState::Online, ResourceState::Online),
            (1, ResourceState::Offline, ResourceState::Offline),
            (2, ResourceState::Faulted, ResourceState::Offline),
            (3, ResourceState::Unknown, ResourceState::Offline),
            (4, ResourceState::Standby, ResourceState::Offline),
            (5, ResourceState::OnlineWarning, ResourceState::Offline),
            (6, ResourceState::OfflineFaulted, ResourceState::Offline),
            (7, ResourceState::Unknown, ResourceState::Offline),
            (127, ResourceState::Unknown, ResourceState::Offline),
        ];
        for (code, with, without) in table {
            assert_eq!(cmdline_check_state(code, true), with, "code {code} on");
            assert_eq!(cmdline_check_state(code, false), without, "code {code} off");
        }
    }

    #[test]
    fn ocf_monitor_codes() {
        assert_eq!(ocf_monitor_state(0), ResourceState::Online);
        assert_eq!(ocf_monitor_state(7), ResourceState::Offline);
        assert_eq!(ocf_monitor_state(8), ResourceState::Online);
        for code in [1, 2, 3, 5, 6, 9] {
            assert_eq!(
                ocf_monitor_state(code),
                ResourceState::Faulted,
                "code {code}"
            );
        }
    }
}
