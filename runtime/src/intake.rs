//! Frame intake, shared by the host and the guest agent: decides whether a received
//! heartbeat frame is accepted (authentic, from a configured peer, of this agent's
//! kind, not replayed, for the interconnect it arrived on) or dropped, and why.
//!
//! The checks run in the order of `docs/protocol.md`, cheapest first. [`FrameIntake::admit`]
//! is pure; [`FrameIntake::receive`] adds the counters and the rate-limited
//! `frame_dropped` events that status and the lab read.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Instant;

use hvcluster_common::application::GuestHeartbeat;
use hvcluster_common::config::NodeId;
use hvcluster_common::membership::Heartbeat;
use hvcluster_common::wire::{self, Accepted, Kind, ReplayError, ReplayWindow, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::counters::Counters;
use crate::events::EventLog;
use crate::net::Datagram;

/// The key that authenticates a cluster's frames; its debug form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(Vec<u8>);

impl ClusterKey {
    /// The key with these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        ClusterKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The payload a heartbeat frame of one kind carries.
pub trait HeartbeatPayload: Serialize + DeserializeOwned {
    /// The frame kind that carries it; frames of another kind are dropped.
    const KIND: Kind;

    /// Index of the interconnect the sender sent it on.
    fn interconnect(&self) -> usize;
}

impl HeartbeatPayload for Heartbeat {
    const KIND: Kind = Kind::Heartbeat;

    fn interconnect(&self) -> usize {
        self.interconnect as usize
    }
}

impl HeartbeatPayload for GuestHeartbeat {
    const KIND: Kind = Kind::GuestHeartbeat;

    fn interconnect(&self) -> usize {
        self.membership.interconnect as usize
    }
}

/// Why a received frame was dropped; [`DropReason::as_str`] names its counter
/// `frames_dropped_REASON` and the `reason` of its `frame_dropped` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short or too long, bad magic, or a length field that disagrees.
    Malformed,
    /// A protocol version this build does not speak.
    Version,
    /// Another cluster id.
    ForeignCluster,
    /// Authentication failed: another key, or tampering.
    BadTag,
    /// An authenticated frame of a kind this agent does not take.
    UnknownKind,
    /// The sender is not a configured peer (or claims to be this node).
    UnknownSender,
    /// A sequence number already seen, or older than the replay window.
    Replayed,
    /// From an earlier run of the sender's agent.
    OldIncarnation,
    /// Authenticated, but the heartbeat does not decode.
    BadPayload,
    /// A heartbeat for one interconnect that arrived on another's socket.
    WrongInterconnect,
    /// From an address that is no other member's address on that interconnect (checked
    /// first, before any decoding).
    UnknownSource,
    /// Accepted, but the driver loop's queue of heartbeats was full.
    QueueFull,
}

impl DropReason {
    /// The reason as counters, events and the documentation spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Version => "version",
            DropReason::ForeignCluster => "foreign_cluster",
            DropReason::BadTag => "bad_tag",
            DropReason::UnknownKind => "unknown_kind",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Replayed => "replayed",
            DropReason::OldIncarnation => "old_incarnation",
            DropReason::BadPayload => "bad_payload",
            DropReason::WrongInterconnect => "wrong_interconnect",
            DropReason::UnknownSource => "unknown_source",
            DropReason::QueueFull => "queue_full",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::BadTag => DropReason::BadTag,
            WireError::ForeignCluster => DropReason::ForeignCluster,
            WireError::Version(_) => DropReason::Version,
            WireError::UnknownKind(_) => DropReason::UnknownKind,
            WireError::Malformed | WireError::BadMagic | WireError::TooLarge => {
                DropReason::Malformed
            }
        }
    }
}

impl From<ReplayError> for DropReason {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => DropReason::Replayed,
            ReplayError::OldIncarnation => DropReason::OldIncarnation,
        }
    }
}

/// An accepted heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted<P> {
    /// The peer that sent it.
    pub sender: NodeId,
    /// The sender's incarnation.
    pub incarnation: u64,
    /// What the replay window learnt about the sender.
    pub accepted: Accepted,
    /// The decoded heartbeat.
    pub payload: P,
}

/// Checks received frames carrying heartbeats `P`: owns the cluster key and id, the
/// configured peers (not this node) and one replay window per peer, shared by all
/// interconnects.
#[derive(Debug)]
pub struct FrameIntake<P> {
    key: ClusterKey,
    cluster_id: u64,
    senders: BTreeSet<NodeId>,
    windows: HashMap<NodeId, ReplayWindow>,
    payload: PhantomData<fn() -> P>,
}

impl<P: HeartbeatPayload> FrameIntake<P> {
    /// An intake for node `me` of cluster `cluster_id`, taking frames from `members`
    /// (this node among them or not: its own frames are refused either way).
    pub fn new(
        key: ClusterKey,
        cluster_id: u64,
        me: NodeId,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        FrameIntake {
            key,
            cluster_id,
            senders: members.into_iter().filter(|&id| id != me).collect(),
            windows: HashMap::new(),
            payload: PhantomData,
        }
    }

    /// Checks `bytes`, received on interconnect `ic`: the heartbeat it carries, or why
    /// it is dropped. Only a frame that passes every check moves its sender's window.
    pub fn admit(&mut self, ic: usize, bytes: &[u8]) -> Result<Admitted<P>, DropReason> {
        let frame = wire::decode(bytes, self.key.as_bytes(), self.cluster_id)?;
        let header = frame.header;
        if !self.senders.contains(&header.sender) {
            return Err(DropReason::UnknownSender);
        }
        if header.kind != P::KIND {
            return Err(DropReason::UnknownKind);
        }
        let accepted = self
            .windows
            .entry(header.sender)
            .or_default()
            .accept(header.incarnation, header.sequence)?;
        let payload: P = postcard::from_bytes(frame.payload).map_err(|_| DropReason::BadPayload)?;
        if payload.interconnect() != ic {
            return Err(DropReason::WrongInterconnect);
        }
        Ok(Admitted {
            sender: header.sender,
            incarnation: header.incarnation,
            accepted,
            payload,
        })
    }

    /// [`FrameIntake::admit`] with the bookkeeping: counts `frames_received` and
    /// `heartbeats_accepted`, and reports a drop with [`report_drop`].
    pub fn receive(
        &mut self,
        datagram: &Datagram,
        counters: &Counters,
        events: &EventLog,
    ) -> Option<Admitted<P>> {
        self.check(
            datagram.ic,
            datagram.from,
            &datagram.bytes,
            counters,
            events,
        )
    }

    /// [`FrameIntake::receive`] on `bytes` received from `from` on interconnect `ic`.
    pub fn check(
        &mut self,
        ic: usize,
        from: SocketAddr,
        bytes: &[u8],
        counters: &Counters,
        events: &EventLog,
    ) -> Option<Admitted<P>> {
        counters.bump("frames_received");
        match self.admit(ic, bytes) {
            Ok(admitted) => {
                counters.bump("heartbeats_accepted");
                Some(admitted)
            }
            Err(reason) => {
                report_drop(counters, events, reason, from);
                None
            }
        }
    }
}

/// Counts a dropped frame under `frames_dropped_REASON`; at most once per period per
/// reason (remote input must not flood the log), records a `frame_dropped` event with
/// the count since the last one and the latest source.
pub fn report_drop(counters: &Counters, events: &EventLog, reason: DropReason, from: SocketAddr) {
    let counter = format!("frames_dropped_{reason}");
    if let Some(since) = counters.bump_logged(&counter, Instant::now()) {
        events.record(
            None,
            "frame_dropped",
            format!("dropped {since} frame(s) ({reason}) since last report; latest from {from}"),
            json!({ "reason": reason.as_str(), "from": from.to_string(), "count_since_last": since }),
        );
    }
}

#[cfg(test)]
mod tests;
