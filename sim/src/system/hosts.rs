//! The hosts as machines: power, fence devices (BMCs), journal disks, agents that hang,
//! slow down and restart, and the network their heartbeats cross.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hvcluster_common::config::NodeId;
use hvcluster_common::fencing::DownRecord;
use hvcluster_common::membership::Heartbeat;
use hvcluster_common::wire::ReplayWindow;

use super::host_agent::HostAgent;

/// How a host's fence device (its BMC) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Powers the host off and confirms.
    Works,
    /// Reports a failure.
    Fails,
    /// Answers only after a long time, with a failure.
    Hangs,
    /// Died with the host's power: fails until the host is powered again.
    BmcDead,
}

/// A fault of a host's journal disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFault {
    /// The next writes' fsync fails (this many).
    FsyncFails(u32),
    /// The disk is full until repaired (milliseconds).
    Full(u64),
    /// The next write is torn: the agent dies in the middle of it and restarts, and the
    /// reload finds a torn record at the end.
    Torn,
}

/// What a host's journal holds.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    /// Records as written; `None` is a torn one (the loader skips it).
    pub journal: Vec<Option<DownRecord>>,
    /// Records whose write was reported done to the agent.
    pub acked: Vec<DownRecord>,
    /// The incarnation counter.
    pub incarnation: u64,
    /// Writes whose fsync will still fail.
    pub fsync_fails: u32,
    /// Full until then.
    pub full_until: Duration,
    /// The next write is torn.
    pub torn_next: bool,
}

impl Disk {
    /// The records a reloading agent reads.
    pub fn load(&self) -> Vec<DownRecord> {
        self.journal.iter().flatten().cloned().collect()
    }
}

/// One host.
#[derive(Debug)]
pub struct Host {
    /// The machine runs.
    pub powered: bool,
    /// Powered off by a fence since it last booted.
    pub fenced_off: bool,
    /// Went down by a kernel panic (its crash kernel sent a notice).
    pub panicked: bool,
    /// Its agent, unless dead.
    pub agent: Option<HostAgent>,
    /// When a dead agent comes back.
    pub agent_back_at: Option<Duration>,
    /// Frozen until then (the agent does nothing; its domains run on).
    pub frozen_until: Duration,
    /// Slow until then (the agent runs one tick in four).
    pub slow_until: Duration,
    /// Its fence device.
    pub device: Device,
    /// Its journal disk.
    pub disk: Disk,
    /// Replay windows per sender.
    pub windows: BTreeMap<NodeId, ReplayWindow>,
    /// Next sequence number per receiver.
    pub sequences: BTreeMap<NodeId, u64>,
    /// Bumped on every agent start: results for an older agent are dropped.
    pub generation: u64,
}

impl Host {
    /// A powered host whose agent is not started yet.
    pub fn new() -> Host {
        Host {
            powered: true,
            fenced_off: false,
            panicked: false,
            agent: None,
            agent_back_at: None,
            frozen_until: Duration::ZERO,
            slow_until: Duration::ZERO,
            device: Device::Works,
            disk: Disk::default(),
            windows: BTreeMap::new(),
            sequences: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Whether the agent runs and can act now (not frozen; slow ones act on `slow_turn`).
    pub fn acting(&self, now: Duration, slow_turn: bool) -> bool {
        self.powered
            && self.agent.is_some()
            && now >= self.frozen_until
            && (now >= self.slow_until || slow_turn)
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

/// A heartbeat on its way.
#[derive(Debug, Clone)]
pub struct HostFrame {
    /// When it arrives.
    pub at: Duration,
    /// Sender index.
    pub from: usize,
    /// Receiver index.
    pub to: usize,
    /// Sender's incarnation.
    pub incarnation: u64,
    /// Sequence number.
    pub sequence: u64,
    /// The heartbeat.
    pub hb: Heartbeat,
}

/// A fence operation on its way.
#[derive(Debug, Clone)]
pub struct FenceFlight {
    /// When the device answers.
    pub done_at: Duration,
    /// The fencing host (index) and its agent's generation.
    pub by: (usize, u64),
    /// The target (index).
    pub target: usize,
    /// Level index.
    pub level: usize,
}

/// The hosts' network faults in force.
#[derive(Debug, Default, Clone)]
pub struct HostNet {
    /// Directed cuts (from, to) and when each heals.
    pub cuts: Vec<((usize, usize), Duration)>,
    /// Percent lost, until.
    pub loss: (u64, Duration),
    /// Percent duplicated, until.
    pub duplicate: (u64, Duration),
    /// Percent delayed by up to this many milliseconds (so reordered), until.
    pub delay: (u64, u64, Duration),
}

impl HostNet {
    /// Whether frames from `a` to `b` are cut at `now`.
    pub fn cut(&self, a: usize, b: usize, now: Duration) -> bool {
        self.cuts
            .iter()
            .any(|(p, until)| *p == (a, b) && now < *until)
    }

    /// Ends every fault.
    pub fn heal(&mut self) {
        *self = HostNet::default();
    }
}
