//! What arrives at the host core: decoded heartbeats, panic notices, the watchdog's
//! verdicts, results of what it asked for, and host-link messages of linked guests.

use std::net::SocketAddr;

use crate::config::NodeId;
use crate::fencing::DownRecord;
use crate::host::kills::request::NotRunningFacts;
use crate::host::notices::Linked;
use crate::membership::{Heartbeat, WatchdogVerdict};
use crate::wire::Accepted;

/// One input of [`super::HostCore::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The fencing journal was read back at start: the DOWN decisions that stand.
    StateLoaded {
        /// The standing DOWN records.
        downs: Vec<DownRecord>,
    },
    /// An authenticated heartbeat of host `from`.
    Heartbeat {
        /// The sender.
        from: NodeId,
        /// The sender's incarnation.
        incarnation: u64,
        /// The replay window's verdict on the frame's incarnation.
        accepted: Accepted,
        /// The heartbeat.
        payload: Box<Heartbeat>,
    },
    /// A datagram on the kdump port (unauthenticated: a probe, not a proof).
    Kdump {
        /// Its source address.
        from: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The load watchdog's verdict about this host.
    Watchdog(WatchdogVerdict),
    /// A fence level ended ([`super::Effect::RunFenceLevel`]).
    FenceLevelDone {
        /// The host fenced.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Every device powered it off and confirmed OFF.
        ok: bool,
        /// What each device did.
        detail: String,
    },
    /// A fencing journal write ended ([`super::Effect::Journal`]).
    Journaled {
        /// The DOWN record the core waits for, when it was one.
        down: Option<DownRecord>,
        /// Whether it is on disk, or why not.
        result: Result<(), String>,
    },
    /// This host starts over with `incarnation` ([`super::Effect::Rejoin`]).
    Rejoined {
        /// The new incarnation, persisted.
        incarnation: u64,
    },
    /// A guest registered on host link `conn` (its claim checked).
    GuestLinked {
        /// The link.
        conn: u64,
        /// Who it is.
        guest: Linked,
    },
    /// Host link `conn` closed.
    LinkClosed {
        /// The link.
        conn: u64,
        /// Why.
        why: String,
    },
    /// The guest on `conn` acknowledged host-down notice `epoch`.
    HostDownAck {
        /// The link.
        conn: u64,
        /// The notice.
        epoch: u64,
    },
    /// The guest on `conn` asks for node `node_id` of `cluster` to be killed.
    KillRequest {
        /// The link.
        conn: u64,
        /// The guest's request id.
        request: u64,
        /// The target's guest cluster.
        cluster: String,
        /// The target's node id.
        node_id: NodeId,
    },
    /// A destroy ended ([`super::Effect::Destroy`]).
    Destroyed {
        /// The host whose order it was.
        from: NodeId,
        /// The order.
        order: u64,
        /// The guest is off.
        ok: bool,
        /// What happened.
        detail: String,
        /// The domain, when it was not running here (no proof by itself).
        not_running: Option<String>,
        /// What the driver knows of that domain elsewhere.
        facts: NotRunningFacts,
    },
}
