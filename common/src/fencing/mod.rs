//! The fencing decision, as a pure state machine.
//!
//! A Failed host is only DOWN with proof that it is off: a fence level that powered it
//! off and confirmed it, a kdump panic notice where a `kdump` level says that counts,
//! an operator's confirmation, or the same proof shared by another host. Never a
//! timeout.
//!
//! Who shoots: only a quorate partition, and in it one coordinator: the live host with
//! the lowest node id. If the coordinator dies mid-fence, the next one starts over (a
//! power-off of a host already off succeeds). In two-node mode both sides stay quorate
//! after a split; the side with the lower survival priority waits `race_delay_ms`
//! before it shoots, so the stronger side fences first and the weaker one is off before
//! its delay ends.
//!
//! A DOWN is acted on only once it is durable: proof first puts the host in
//! `Journaling` and asks for the record to be written ([`FenceAction::JournalDown`]);
//! only [`Fencing::on_journaled`] with a success makes it DOWN (shared in heartbeats,
//! notices, recovery). A failed write is retried every [`JOURNAL_RETRY`] and reported.
//!
//! The machine is driven by [`Fencing::tick`] with a [`View`] of the membership, by
//! [`Fencing::on_level_result`], [`Fencing::on_journaled`], [`Fencing::on_peer_down`]
//! and the operator calls; it returns [`FenceAction`]s.

mod down;
mod journaled;
mod target;
#[cfg(test)]
mod tests;
mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, DeviceKind, NodeId};
use crate::membership::{HostState, Membership};

pub use down::{DownRecord, Downs, Proof};
pub use journaled::JOURNAL_RETRY;
use target::Target;
pub use target::{FenceState, TargetStatus};
pub use view::{PeerFacts, View};

/// Kind of a fence level, from its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelKind {
    /// Fence agents; all must power the host off and confirm.
    Agents(Vec<String>),
    /// A kdump notice is proof; wait this long for one.
    Kdump {
        /// How long to wait for a notice.
        wait: Duration,
    },
    /// Wait for an operator.
    Manual,
}

/// What the fencing configuration says, reduced to what the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencingConfig {
    /// This host.
    pub me: NodeId,
    /// Levels of every host, in order.
    pub levels: BTreeMap<NodeId, Vec<LevelKind>>,
    /// Survival priority of every host (higher survives).
    pub priority: BTreeMap<NodeId, (u32, std::cmp::Reverse<String>)>,
    /// Two-node rules apply.
    pub two_node: bool,
    /// Delay of the weaker side in a two-node race.
    pub race_delay: Duration,
    /// First retry pause after every level failed.
    pub retry_backoff: Duration,
    /// Longest retry pause.
    pub max_backoff: Duration,
}

impl FencingConfig {
    /// Builds the machine's configuration for host `me`.
    pub fn from_cluster(config: &ClusterConfig, me: NodeId) -> Self {
        let level_kind = |names: &Vec<String>| {
            let devices: Vec<_> = names
                .iter()
                .filter_map(|n| config.fence_device(n))
                .collect();
            if let Some(k) = devices.iter().find(|d| d.kind == DeviceKind::Kdump) {
                LevelKind::Kdump {
                    wait: Duration::from_millis(k.wait_ms),
                }
            } else if devices.iter().any(|d| d.kind == DeviceKind::Manual) {
                LevelKind::Manual
            } else {
                LevelKind::Agents(names.clone())
            }
        };
        FencingConfig {
            me,
            levels: config
                .hosts
                .iter()
                .map(|h| (h.node_id, h.fence_levels.iter().map(level_kind).collect()))
                .collect(),
            priority: config
                .hosts
                .iter()
                .map(|h| (h.node_id, (h.weight, std::cmp::Reverse(h.name.clone()))))
                .collect(),
            two_node: config.two_node(),
            race_delay: Duration::from_millis(config.fencing.race_delay_ms),
            retry_backoff: Duration::from_millis(config.fencing.retry_backoff_ms),
            max_backoff: Duration::from_millis(config.fencing.max_backoff_ms),
        }
    }
}

/// Something for the operator and the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceEvent {
    /// This host starts fencing `target` at `level` (1-based).
    Started {
        /// The host being fenced.
        target: NodeId,
        /// Level number, from 1.
        level: usize,
    },
    /// This host waits before shooting (two-node race, weaker side).
    RaceDelay {
        /// The host it would fence.
        target: NodeId,
        /// How long it waits, ms.
        delay_ms: u64,
    },
    /// A level failed; the next one runs.
    LevelFailed {
        /// The host being fenced.
        target: NodeId,
        /// Level number, from 1.
        level: usize,
        /// What went wrong.
        detail: String,
    },
    /// Every level failed: the host stays Failed-unfenced; nothing of it is recovered.
    AllLevelsFailed {
        /// The host.
        target: NodeId,
        /// Retry round that just ended, from 1.
        round: u32,
        /// When the next round starts, ms from now.
        retry_in_ms: u64,
    },
    /// The host has no fence level configured: it stays Failed-unfenced until an
    /// operator confirms it is off.
    NoFenceLevels {
        /// The host.
        target: NodeId,
    },
    /// A manual level waits for `hvctl host confirm-down`.
    AwaitingOperator {
        /// The host.
        target: NodeId,
    },
    /// The host is DOWN, with proof.
    Down(DownRecord),
    /// A host that was DOWN came back with a new incarnation.
    Rejoined {
        /// The host.
        target: NodeId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// The host is off with proof, but its DOWN record could not be written to the
    /// journal: it is not DOWN (nothing of it is recovered) until a retry succeeds.
    JournalFailed {
        /// The host.
        target: NodeId,
        /// Why the write failed.
        detail: String,
        /// When the next write starts, ms from now.
        retry_in_ms: u64,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceAction {
    /// Run every device of this level against `target`: `off`, then `status` must say
    /// OFF; report with [`Fencing::on_level_result`].
    RunLevel {
        /// The host to power off.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Device names.
        devices: Vec<String>,
    },
    /// Record and report this event. A `Down` event comes only after its record was
    /// journaled (see [`FenceAction::JournalDown`]): act on it at once, and do not write
    /// it again.
    Event(FenceEvent),
    /// Write `FenceEvent::Down` of this record to the journal (fsync) and report how it
    /// went with [`Fencing::on_journaled`]; nothing may be done because of it before.
    JournalDown(DownRecord),
}

/// Why an operator request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The host is heard alive.
    #[error("host {0} is heard alive ({1}); it cannot be declared down")]
    HeardAlive(NodeId, String),
    /// The host is already down.
    #[error("host {0} is already down")]
    AlreadyDown(NodeId),
    /// Unknown host.
    #[error("there is no host with node id {0}")]
    UnknownHost(NodeId),
    /// This partition has no quorum.
    #[error("this host's partition has no quorum; only a quorate partition fences")]
    NoQuorum,
}

/// The fencing state machine of one host.
#[derive(Debug)]
pub struct Fencing {
    cfg: FencingConfig,
    targets: BTreeMap<NodeId, Target>,
    last_view: Option<View>,
    /// When this host's latest stall ended, as last seen.
    last_stall: Option<Duration>,
}

impl Fencing {
    /// A machine with every host alive.
    pub fn new(cfg: FencingConfig) -> Self {
        let targets = cfg
            .levels
            .keys()
            .filter(|n| **n != cfg.me)
            .map(|n| (*n, Target::default()))
            .collect();
        Fencing {
            cfg,
            targets,
            last_view: None,
            last_stall: None,
        }
    }

    /// Restores DOWN decisions from the journal (latest record per host wins).
    pub fn restore(&mut self, records: impl IntoIterator<Item = DownRecord>) {
        for r in records {
            if let Some(t) = self.targets.get_mut(&r.target) {
                t.state = FenceState::Down(r);
            }
        }
    }

    /// State of every other host.
    pub fn status(&self) -> Vec<TargetStatus> {
        self.targets.iter().map(|(n, t)| t.status(*n)).collect()
    }

    /// The DOWN record of `target`, if it is down.
    pub fn down(&self, target: NodeId) -> Option<&DownRecord> {
        match &self.targets.get(&target)?.state {
            FenceState::Down(r) => Some(r),
            _ => None,
        }
    }

    /// Every DOWN record, for heartbeats (peers adopt them).
    pub fn down_records(&self) -> Vec<DownRecord> {
        self.targets
            .values()
            .filter_map(|t| {
                if let FenceState::Down(r) = &t.state {
                    Some(r.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    fn coordinator(&self, view: &View) -> bool {
        let present = view.peers.iter().filter(|p| p.state.present());
        crate::host::coordinator::is_coordinator(self.cfg.me, present.map(|p| p.node))
    }

    fn stronger_than_me(&self, other: NodeId) -> bool {
        self.cfg.priority.get(&other) > self.cfg.priority.get(&self.cfg.me)
    }

    /// `target`'s latest incarnation in the latest view, confirmed or not (0 if never
    /// heard): a power-off confirmed now ends it.
    fn known_incarnation(&self, target: NodeId) -> u64 {
        self.last_view
            .as_ref()
            .and_then(|v| v.peers.iter().find(|p| p.node == target))
            .map(|p| p.incarnation.max(p.latest))
            .unwrap_or(0)
    }

    /// First pause after a failed round. In a two-node cluster at least twice the race
    /// delay: the other side may be about to shoot, and a retry in flight at that
    /// moment would take both hosts down.
    fn base_backoff(&self) -> Duration {
        if self.cfg.two_node {
            self.cfg.retry_backoff.max(self.cfg.race_delay * 2)
        } else {
            self.cfg.retry_backoff
        }
    }

    /// Advances time with the current membership view.
    pub fn tick(&mut self, now: Duration, view: &View) -> Vec<FenceAction> {
        let mut out = Vec::new();
        let coordinator = self.coordinator(view);
        let base_backoff = self.base_backoff();
        let stall = view.stalled_ago.map(|d| now.saturating_sub(d));
        if stall.is_some() && stall != self.last_stall {
            // Back from a stall of its own, this host's earlier verdicts are stale:
            // fences not yet running are dropped; detection starts over.
            self.last_stall = stall;
            for t in self.targets.values_mut() {
                t.forget_pending();
            }
        }
        let recently_stalled = view
            .stalled_ago
            .is_some_and(|d| d < self.cfg.race_delay * 2);
        // Quorum counts Suspect peers, but a host that is itself cut off sees every
        // peer go Suspect and then Failed one by one: with the first Failed and the
        // others still Suspect it would still count as quorate and shoot a healthy
        // host. Nothing is fenced until no peer is Suspect any more.
        let settled = !view.peers.iter().any(|p| p.state == HostState::Suspect);
        for p in &view.peers {
            let stronger = self.stronger_than_me(p.node);
            let levels = self.cfg.levels.get(&p.node).cloned().unwrap_or_default();
            let Some(t) = self.targets.get_mut(&p.node) else {
                continue;
            };
            let ctx = target::Ctx {
                now,
                me: self.cfg.me,
                quorate: view.quorate && settled,
                // The stronger end of a one-way partition acts on it itself.
                coordinator: coordinator || (p.accuses_me && !stronger),
                // The weaker side of a two-node race waits; so does a side that was
                // just stalled, since the other side may have started its wait while
                // this one could not notice anything.
                race_delay: if self.cfg.two_node && (stronger || recently_stalled) {
                    Some(self.cfg.race_delay)
                } else {
                    None
                },
                retry_backoff: base_backoff,
                max_backoff: self.cfg.max_backoff,
                levels: &levels,
            };
            t.tick(p, &ctx, &mut out);
        }
        self.last_view = Some(view.clone());
        out
    }

    /// The result of a level this machine asked to run.
    pub fn on_level_result(
        &mut self,
        now: Duration,
        target: NodeId,
        level: usize,
        ok: bool,
        detail: String,
    ) -> Vec<FenceAction> {
        let mut out = Vec::new();
        let levels = self.cfg.levels.get(&target).cloned().unwrap_or_default();
        let me = self.cfg.me;
        let (backoff, max) = (self.base_backoff(), self.cfg.max_backoff);
        // A power-off confirmed now also ends any incarnation heard before now (the
        // target may have rejoined while the fence was running).
        let known = self.known_incarnation(target);
        if let Some(t) = self.targets.get_mut(&target) {
            if ok {
                t.failed_incarnation = t.failed_incarnation.max(known);
            }
            t.on_level_result(
                now, target, me, level, ok, detail, &levels, backoff, max, &mut out,
            );
        }
        out
    }

    /// A peer says `record.target` is DOWN. Adopted unless this host hears the target
    /// (`alive`: heartbeats within the dead time, confirmed or not) in a later
    /// incarnation than the one the record proves (`latest`, confirmed or not): it
    /// booted since, and the record proves nothing of the life it runs. Once that life
    /// is silent for the dead time again, the record is adopted: its prover may have
    /// been cut off from a rejoin before its proof, which then ended the later
    /// incarnation too.
    pub fn on_peer_down(
        &mut self,
        record: &DownRecord,
        latest: u64,
        alive: bool,
    ) -> Vec<FenceAction> {
        let mut out = Vec::new();
        if record.target == self.cfg.me || (alive && latest > record.incarnation) {
            return out;
        }
        if let Some(t) = self.targets.get_mut(&record.target) {
            if !t.decided() {
                t.journal(record.clone(), &mut out);
            }
        }
        out
    }

    /// DOWN records a peer's heartbeat carried, judged against `membership` at `now`.
    pub fn on_peer_downs(
        &mut self,
        records: &[DownRecord],
        membership: &Membership,
        now: Duration,
    ) -> Vec<FenceAction> {
        // Every heartbeat repeats them: skip the ones already held before building the
        // membership snapshot.
        let new: Vec<&DownRecord> = records
            .iter()
            .filter(|r| r.target != self.cfg.me && !self.decided(r.target))
            .collect();
        if new.is_empty() {
            return Vec::new();
        }
        let peers = membership.peers(now);
        let mut out = Vec::new();
        for r in new {
            let facts = peers.iter().find(|p| p.node == r.target);
            let latest = membership.latest_incarnation(r.target).unwrap_or(0);
            let alive = facts.is_some_and(|p| p.state.present() || p.state == HostState::Joining)
                || membership.heard_lately(r.target, now);
            out.extend(self.on_peer_down(r, latest, alive));
        }
        out
    }

    /// `hvctl host confirm-down`: an operator verified the host is off. Refused while
    /// the host is heard alive.
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Vec<FenceAction>, Refusal> {
        let view = self.last_view.as_ref();
        let facts = view
            .and_then(|v| v.peers.iter().find(|p| p.node == target))
            .copied();
        let t = self
            .targets
            .get_mut(&target)
            .ok_or(Refusal::UnknownHost(target))?;
        if t.decided() {
            return Err(Refusal::AlreadyDown(target));
        }
        if let Some(f) = facts {
            let alive = match f.state {
                HostState::Failed(_) => f.must_rejoin,
                // Its agent stopped: nothing is heard of it, and only the operator can
                // say that it is off (a left host that loses power is not detected).
                HostState::Unknown | HostState::Left => false,
                _ => true,
            };
            if alive {
                let how = if f.must_rejoin {
                    "its heartbeats arrive again".to_string()
                } else {
                    format!("{:?}", f.state)
                };
                return Err(Refusal::HeardAlive(target, how));
            }
        }
        let record = DownRecord {
            target,
            incarnation: facts.map(|f| f.incarnation.max(f.latest)).unwrap_or(0),
            proof: Proof::Operator,
            by: self.cfg.me,
        };
        let mut out = Vec::new();
        t.journal(record, &mut out);
        Ok(out)
    }

    /// `hvctl fence HOST`: fence a host now, whatever its state, from level 1.
    pub fn request_fence(
        &mut self,
        now: Duration,
        target: NodeId,
    ) -> Result<Vec<FenceAction>, Refusal> {
        if !self.last_view.as_ref().is_some_and(|v| v.quorate) {
            return Err(Refusal::NoQuorum);
        }
        let levels = self
            .cfg
            .levels
            .get(&target)
            .cloned()
            .ok_or(Refusal::UnknownHost(target))?;
        let incarnation = self.known_incarnation(target);
        let t = self
            .targets
            .get_mut(&target)
            .ok_or(Refusal::UnknownHost(target))?;
        if t.decided() {
            return Err(Refusal::AlreadyDown(target));
        }
        t.failed_incarnation = incarnation;
        let mut out = Vec::new();
        t.start(now, target, 0, &levels, &mut out);
        Ok(out)
    }
}
