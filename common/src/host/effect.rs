//! What the host core asks its driver to do: the effects of one step or tick, in order.

use crate::config::NodeId;
use crate::fencing::{DownRecord, FenceEvent};
use crate::hostlink::LinkMessage;
use crate::membership::MembershipEvent;

/// A guest of this host to destroy, as it linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyTarget {
    /// Its guest cluster.
    pub cluster: String,
    /// Its node name.
    pub node: String,
    /// Its domain (the node name when it did not say).
    pub domain: String,
}

/// How the fencing journal's health changed with a write's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalHealth {
    /// No change.
    Same,
    /// The first failed write after a success: why.
    Failing(String),
    /// A write succeeded after this many failed ones.
    Recovered(u64),
}

/// The wording of a rate-limited event, given how many happened since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitedText {
    /// The latest occurrence, then ` (N <what> since the last report)` when there were
    /// more than one.
    Latest {
        /// The latest occurrence.
        text: String,
        /// What the count counts (`refused`), or nothing.
        what: &'static str,
    },
    /// `before` N `after`.
    Count {
        /// Text before the count.
        before: String,
        /// Text after it.
        after: String,
    },
}

impl LimitedText {
    /// The message for `since` occurrences since the last report.
    pub fn render(&self, since: u64) -> String {
        match self {
            LimitedText::Latest { text, .. } if since <= 1 => text.clone(),
            LimitedText::Latest { text, what: "" } => {
                format!("{text} ({since} since the last report)")
            }
            LimitedText::Latest { text, what } => {
                format!("{text} ({since} {what} since the last report)")
            }
            LimitedText::Count { before, after } => format!("{before}{since}{after}"),
        }
    }
}

/// One thing the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a heartbeat on every interconnect now, assembled by
    /// [`super::HostCore::heartbeat`].
    SendHeartbeats,
    /// Start a new incarnation (persisted) and give it back with
    /// [`super::Event::Rejoined`].
    Rejoin,
    /// Report a membership event.
    Membership(MembershipEvent),
    /// Report a membership event that a forged input can repeat at will: rate-limited.
    MembershipLimited(MembershipEvent),
    /// Write `event` to the fencing journal (fsync); with `down`, report how the write
    /// went with [`super::Event::Journaled`]: nothing is done because of it before.
    Journal {
        /// The record.
        event: FenceEvent,
        /// The DOWN record the core waits for, when it is one.
        down: Option<DownRecord>,
    },
    /// Run every device of fence level `level` against `target`; report with
    /// [`super::Event::FenceLevelDone`].
    RunFenceLevel {
        /// The host to power off.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Device names.
        devices: Vec<String>,
    },
    /// Report a fencing event (journaled already where it had to be).
    Fence(FenceEvent),
    /// The fencing journal's health changed: an alarm, or its end.
    JournalHealth(JournalHealth),
    /// Host `0` is DOWN with its record journaled: what the driver still decides
    /// itself (VM HA) acts on it now.
    HostDown(NodeId),
    /// Destroy a guest of this host for kill order `order` of host `from`; report with
    /// [`super::Event::Destroyed`].
    Destroy {
        /// The host that gave the order (this one for its own).
        from: NodeId,
        /// The order.
        order: u64,
        /// The guest.
        guest: DestroyTarget,
    },
    /// Send `message` to the guest linked on `conn`, if it still is.
    SendToGuest {
        /// The link.
        conn: u64,
        /// The message.
        message: LinkMessage,
    },
    /// Record an event.
    Record {
        /// Host or guest it is about.
        subject: Option<String>,
        /// Event kind.
        kind: &'static str,
        /// What happened, for people.
        message: String,
        /// Structured detail.
        detail: serde_json::Value,
    },
    /// Count one in `counter` and record the event at most once every 10 s (remote
    /// input can repeat it at will), saying how many happened since the last one.
    RecordLimited {
        /// Counter of every occurrence.
        counter: &'static str,
        /// Host or guest it is about.
        subject: Option<String>,
        /// Event kind.
        kind: &'static str,
        /// What happened, for people.
        message: LimitedText,
        /// Structured detail.
        detail: serde_json::Value,
    },
    /// Count one in `0`.
    Count(&'static str),
    /// Count one in `counter` and log `message` as a warning at most once a period.
    LogLimited {
        /// The counter.
        counter: &'static str,
        /// What to log.
        message: String,
    },
}

/// The effects of one step, in the order they must be performed.
pub type Effects = Vec<Effect>;
