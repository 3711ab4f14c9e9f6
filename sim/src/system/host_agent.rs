//! The adapter of one host agent: events in, effects out.
//!
//! Today it composes the membership and fencing cores in the order the host agent's
//! driver does (a heartbeat feeds membership, then the DOWN records it carries feed
//! fencing; a tick runs membership, then fencing on a view of it). When `HostCore`
//! (`common/src/host/`) lands, this file is the one place that changes: `step` hands
//! the event to the core and maps its effects.

use std::time::Duration;

use hvcluster_common::config::NodeId;
use hvcluster_common::fencing::{
    DownRecord, Downs, FenceAction, FenceEvent, Fencing, FencingConfig, LevelKind, View,
};
use hvcluster_common::membership::{Action, Heartbeat, HostState, Membership, MembershipConfig};
use hvcluster_common::quorum::QuorumRules;
use hvcluster_common::wire::Accepted;

/// Heartbeat interval of the simulated hosts.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// Silence before a host is Failed.
pub const DEAD_AFTER: Duration = Duration::from_millis(1200);
/// How long a kdump level waits for a panic notice.
pub const KDUMP_WAIT: Duration = Duration::from_millis(2000);
/// The weaker side's delay in a two-node race.
pub const RACE_DELAY: Duration = Duration::from_millis(1500);

/// What reaches a host agent.
#[derive(Debug)]
pub enum HostEvent<'a> {
    /// Time passes.
    Tick,
    /// An authenticated heartbeat of `from`, judged by the replay window.
    Heartbeat {
        /// The sender.
        from: NodeId,
        /// Its incarnation.
        incarnation: u64,
        /// The replay window's verdict.
        accepted: Accepted,
        /// The heartbeat (with the DOWN records the sender holds).
        hb: &'a Heartbeat,
    },
    /// A kdump panic notice naming `node` (true or forged: it is not authenticated).
    KdumpNotice {
        /// The host it names.
        node: NodeId,
    },
    /// A fence level this agent asked for ended.
    LevelResult {
        /// The host fenced.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
        /// Powered off and confirmed.
        ok: bool,
    },
    /// A DOWN record was written to the journal, or not.
    Journaled {
        /// The record.
        record: DownRecord,
        /// How the write went.
        result: Result<(), String>,
    },
    /// `hvctl host confirm-down`.
    ConfirmDown {
        /// The host the operator says is off.
        target: NodeId,
    },
    /// The agent leaves the cluster (SIGTERM, `hvctl host leave`).
    Leave,
}

/// What a host agent asks its driver (here, the world) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEffect {
    /// Send a heartbeat ([`HostAgent::heartbeat`]) to every peer.
    SendHeartbeats,
    /// Run a fence level against `target`; report with [`HostEvent::LevelResult`].
    RunLevel {
        /// The host to power off.
        target: NodeId,
        /// Level index, from 0.
        level: usize,
    },
    /// Write this record to the journal; report with [`HostEvent::Journaled`].
    Journal(DownRecord),
    /// `target` is DOWN and journaled: recover its domains, tell the guests.
    Down(DownRecord),
    /// An operator request was refused.
    Refused(String),
    /// Something for the event log.
    Log(String),
}

/// Cluster-wide settings every host agent of a world shares.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Number of hosts (ids 1..=n).
    pub hosts: usize,
    /// A kdump level comes before the power fence.
    pub kdump_level: bool,
    /// A flaw for the checker's own test: fencing is shown a quorate view always.
    pub fence_without_quorum: bool,
}

fn membership_config(me: NodeId, s: &HostSettings) -> MembershipConfig {
    let n = s.hosts as u32;
    MembershipConfig {
        me,
        hosts: (1..=n).map(|i| (i, format!("h{i}"), 1)).collect(),
        interconnects: 1,
        interval: INTERVAL,
        suspect_after: DEAD_AFTER / 2,
        dead_after: DEAD_AFTER,
        hung_limit: DEAD_AFTER,
        rejoin_heartbeats: 3,
        quorum: QuorumRules {
            total_votes: n,
            two_node: n == 2,
            wait_for_all: n == 2,
        },
        digest: [3; 16],
    }
}

fn fencing_config(me: NodeId, s: &HostSettings) -> FencingConfig {
    let n = s.hosts as u32;
    let mut levels = Vec::new();
    if s.kdump_level {
        levels.push(LevelKind::Kdump { wait: KDUMP_WAIT });
    }
    levels.push(LevelKind::Agents(vec!["bmc".into()]));
    FencingConfig {
        me,
        levels: (1..=n).map(|i| (i, levels.clone())).collect(),
        priority: (1..=n)
            .map(|i| (i, (1, std::cmp::Reverse(format!("h{i}")))))
            .collect(),
        two_node: n == 2,
        race_delay: RACE_DELAY,
        retry_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_millis(4000),
    }
}

/// One host agent's cores.
#[derive(Debug)]
pub struct HostAgent {
    membership: Membership,
    fencing: Fencing,
    incarnation: u64,
    fence_without_quorum: bool,
    started_at: Duration,
}

impl HostAgent {
    /// An agent starting at `now` under `incarnation`, with the DOWN records its journal
    /// held.
    pub fn start(
        me: NodeId,
        s: &HostSettings,
        incarnation: u64,
        now: Duration,
        journal: &[DownRecord],
    ) -> Self {
        let mut fencing = Fencing::new(fencing_config(me, s));
        fencing.restore(journal.iter().cloned());
        HostAgent {
            membership: Membership::new(membership_config(me, s), incarnation, now),
            fencing,
            incarnation,
            fence_without_quorum: s.fence_without_quorum,
            started_at: now,
        }
    }

    /// Hands one event to the cores; returns what must be done.
    pub fn step(&mut self, now: Duration, event: HostEvent<'_>) -> Vec<HostEffect> {
        let mut out = Vec::new();
        match event {
            HostEvent::Tick => {
                let actions = self.membership.tick(now);
                self.membership_actions(now, actions, &mut out);
                let mut view = View::of(&self.membership, now);
                if self.fence_without_quorum {
                    view.quorate = true;
                }
                let actions = self.fencing.tick(now, &view);
                fence_effects(actions, &mut out);
            }
            HostEvent::Heartbeat {
                from,
                incarnation,
                accepted,
                hb,
            } => {
                let actions = self
                    .membership
                    .on_heartbeat(now, from, incarnation, accepted, hb);
                self.membership_actions(now, actions, &mut out);
                // Fencing's section; one that does not decode counts as none, as in the agent.
                if let Some(Ok(Downs(down))) = hb.read::<Downs>() {
                    let actions = self.fencing.on_peer_downs(&down, &self.membership, now);
                    fence_effects(actions, &mut out);
                }
            }
            HostEvent::KdumpNotice { node } => {
                let actions = self.membership.on_kdump_notice(now, node);
                self.membership_actions(now, actions, &mut out);
            }
            HostEvent::LevelResult { target, level, ok } => {
                let detail = if ok { "off" } else { "fence device failed" };
                let actions = self
                    .fencing
                    .on_level_result(now, target, level, ok, detail.into());
                fence_effects(actions, &mut out);
            }
            HostEvent::Journaled { record, result } => {
                let actions = self.fencing.on_journaled(now, &record, result);
                fence_effects(actions, &mut out);
            }
            HostEvent::Leave => {
                let actions = self.membership.leave();
                self.membership_actions(now, actions, &mut out);
            }
            HostEvent::ConfirmDown { target } => match self.fencing.confirm_down(target) {
                Ok(actions) => fence_effects(actions, &mut out),
                Err(e) => out.push(HostEffect::Refused(e.to_string())),
            },
        }
        out
    }

    fn membership_actions(
        &mut self,
        now: Duration,
        actions: Vec<Action>,
        out: &mut Vec<HostEffect>,
    ) {
        for a in actions {
            match a {
                Action::SendHeartbeats => out.push(HostEffect::SendHeartbeats),
                Action::Rejoin => {
                    self.incarnation += 1;
                    let more = self.membership.rejoin(now, self.incarnation);
                    self.membership_actions(now, more, out);
                }
                Action::Event(e) => out.push(HostEffect::Log(format!("{e:?}"))),
            }
        }
    }

    /// The heartbeat to send now, with the DOWN records this agent holds.
    pub fn heartbeat(&self) -> Heartbeat {
        let mut hb = self.membership.heartbeat(0);
        let down = self.fencing.down_records();
        if !down.is_empty() {
            hb.put(&Downs(down));
        }
        hb
    }

    /// The incarnation this agent runs under.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether this agent's partition is quorate (as membership says, flaw or not).
    pub fn quorate(&self) -> bool {
        self.membership.quorum().quorate
    }

    /// The DOWN record of `target`, if this agent holds it DOWN.
    pub fn down(&self, target: NodeId) -> Option<&DownRecord> {
        self.fencing.down(target)
    }

    /// Whether this agent holds `target` DOWN or is writing it down.
    pub fn decided(&self, target: NodeId) -> bool {
        self.fencing.decided(target)
    }

    /// Whether `node` is present (Up, Suspect) as this agent sees it at `now`.
    pub fn sees_present(&self, node: NodeId, now: Duration) -> bool {
        node == self.membership.me()
            || self
                .membership
                .peers(now)
                .iter()
                .any(|p| p.node == node && p.state.present())
    }

    /// Whether this agent is the coordinator: quorate and the lowest present node.
    pub fn coordinator(&self, now: Duration) -> bool {
        let me = self.membership.me();
        self.quorate()
            && self
                .membership
                .peers(now)
                .iter()
                .all(|p| p.node > me || !p.state.present())
    }

    /// Whether `node` is present (Up, Suspect) or Joining as this agent sees it.
    pub fn sees_alive(&self, node: NodeId) -> bool {
        self.membership
            .state_of(node)
            .is_some_and(|s| s.present() || s == HostState::Joining)
    }

    /// When this agent started.
    pub fn started_at(&self) -> Duration {
        self.started_at
    }

    /// Whether `node` is Left as this agent sees it.
    pub fn holds_left(&self, node: NodeId) -> bool {
        self.membership.state_of(node) == Some(HostState::Left)
    }

    /// Whether this agent holds `node` Failed.
    pub fn failed(&self, node: NodeId) -> bool {
        matches!(self.membership.state_of(node), Some(HostState::Failed(_)))
    }
}

fn fence_effects(actions: Vec<FenceAction>, out: &mut Vec<HostEffect>) {
    for a in actions {
        out.push(match a {
            FenceAction::RunLevel { target, level, .. } => HostEffect::RunLevel { target, level },
            FenceAction::JournalDown(r) => HostEffect::Journal(r),
            FenceAction::Event(FenceEvent::Down(r)) => HostEffect::Down(r),
            FenceAction::Event(e) => HostEffect::Log(format!("{e:?}")),
        });
    }
}
