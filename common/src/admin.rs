//! The admin socket protocol: newline-delimited JSON over a root-only Unix socket.
//!
//! A client writes one [`Request`] per line; the agent answers each with one
//! [`Response`] line, except `events` with `follow`, which then streams one
//! [`Response::Event`] per line until the client hangs up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::membership::{HostState, LinkState, WatchdogVerdict};
use crate::quorum::QuorumState;

/// A request to the host agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The host's view of the cluster. Always allowed.
    Status,
    /// Recorded events after `since` (a sequence number; all when absent); with
    /// `follow`, keep streaming new ones. Always allowed.
    Events {
        /// Only events with a larger sequence number.
        #[serde(default)]
        since: Option<u64>,
        /// Keep the connection open and stream new events.
        #[serde(default)]
        follow: bool,
    },
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// Answer to `status`.
    Status(Box<HostStatus>),
    /// One event (answers `events`, one line each).
    Event(EventRecord),
    /// Marks the end of the history part of an `events` answer.
    EndOfHistory {
        /// Sequence number of the last event sent.
        last_seq: u64,
    },
    /// The request could not be served.
    Error {
        /// What was wrong.
        message: String,
    },
}

/// One host's view of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Cluster name.
    pub cluster: String,
    /// This host's name.
    pub host: String,
    /// This host's node id.
    pub node_id: NodeId,
    /// This agent's incarnation.
    pub incarnation: u64,
    /// Milliseconds since the Unix epoch when this agent started.
    pub started_unix_ms: u64,
    /// This partition's quorum.
    pub quorum: QuorumState,
    /// This host's own load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Whether the agent runs with real-time scheduling.
    pub realtime: bool,
    /// Whether the agent's memory is locked.
    pub memory_locked: bool,
    /// Interconnect names, in the order of every `links` list.
    pub interconnects: Vec<String>,
    /// Every host of the cluster, this one included.
    pub hosts: Vec<HostLine>,
    /// Counters: frames received and dropped by reason, notices accepted and refused.
    pub counters: BTreeMap<String, u64>,
}

/// One host as seen from the reporting host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLine {
    /// Host name.
    pub name: String,
    /// Node id.
    pub node_id: NodeId,
    /// Survival weight.
    pub weight: u32,
    /// This line describes the reporting host itself.
    pub local: bool,
    /// State (always Up for the reporting host).
    pub state: HostState,
    /// Milliseconds in that state.
    pub state_for_ms: u64,
    /// Link state per interconnect.
    pub links: Vec<LinkState>,
    /// Its agent's incarnation, if heard.
    pub incarnation: Option<u64>,
    /// Its load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Failed and heard again: must rejoin.
    pub must_rejoin: bool,
    /// A panic notice arrived from it.
    pub panic_noticed: bool,
    /// Milliseconds since it was last heard.
    pub silent_for_ms: Option<u64>,
    /// Its configuration differs.
    pub config_mismatch: bool,
    /// Where fencing of it stands (absent for the reporting host itself).
    #[serde(default)]
    pub fence: Option<crate::fencing::TargetStatus>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, growing within one agent incarnation.
    pub seq: u64,
    /// Microseconds since the Unix epoch when it happened.
    pub unix_us: u64,
    /// Host that recorded it.
    pub observer: String,
    /// Host it is about, if any.
    pub subject: Option<String>,
    /// Machine-readable kind, e.g. `host_state`, `link`, `quorum`, `frame_dropped`.
    pub kind: String,
    /// One line for people.
    pub message: String,
    /// Structured details.
    pub detail: serde_json::Value,
}
