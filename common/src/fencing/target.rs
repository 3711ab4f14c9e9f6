//! Fencing of one host, as seen by one fencing machine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DownRecord, FenceAction, FenceEvent, LevelKind, PeerFacts, Proof};
use crate::config::NodeId;
use crate::membership::HostState;

/// Where fencing of one host stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FenceState {
    /// Not failed.
    #[default]
    Alive,
    /// Failed; level `level` starts when this host may act (quorate coordinator) and
    /// `not_before` has passed.
    Pending {
        /// Next level to run, from 0.
        level: usize,
        /// Not before this time (race delay, retry backoff).
        not_before: Duration,
    },
    /// A level of fence agents is running.
    Running {
        /// Level, from 0.
        level: usize,
    },
    /// A kdump level waits for a panic notice.
    WaitingKdump {
        /// Level, from 0.
        level: usize,
        /// The next level runs after this.
        until: Duration,
    },
    /// A manual level waits for `hvctl host confirm-down`.
    AwaitingOperator,
    /// Every level failed; a new round starts at `retry_at`.
    Unfenced {
        /// When the next round starts.
        retry_at: Duration,
    },
    /// Off, with proof.
    Down(DownRecord),
    /// Off, with proof, but not DOWN until the record is in the journal: nothing is
    /// shared or recovered because of it before [`super::Fencing::on_journaled`] says so.
    Journaling {
        /// The record being written.
        record: DownRecord,
        /// After a failed write: when to write it again (`None`: a write is under way).
        retry_at: Option<Duration>,
        /// Failed writes so far.
        failures: u32,
    },
}

/// One host's fencing state, for `hvctl status` and `hvctl fence history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The host.
    pub node: NodeId,
    /// `alive`, `pending`, `fencing`, `waiting-kdump`, `awaiting-operator`, `unfenced`,
    /// `journaling` (off, being written to the journal), `journal-failed` or `down`.
    pub phase: String,
    /// Level being run or next to run, from 1.
    pub level: Option<usize>,
    /// Rounds of all levels that failed so far.
    pub failed_rounds: u32,
    /// The proof, when down.
    pub down: Option<DownRecord>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Target {
    pub(super) state: FenceState,
    pub(super) failed_incarnation: u64,
    rounds: u32,
    race_noted: bool,
}

pub(super) struct Ctx<'a> {
    pub now: Duration,
    pub me: NodeId,
    pub quorate: bool,
    pub coordinator: bool,
    pub race_delay: Option<Duration>,
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
    pub levels: &'a [LevelKind],
}

fn backoff(rounds: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(1u32 << rounds.saturating_sub(1).min(16))
        .min(max)
}

impl Target {
    pub(super) fn status(&self, node: NodeId) -> TargetStatus {
        let (phase, level) = match &self.state {
            FenceState::Alive => ("alive", None),
            FenceState::Pending { level, .. } => ("pending", Some(level + 1)),
            FenceState::Running { level } => ("fencing", Some(level + 1)),
            FenceState::WaitingKdump { level, .. } => ("waiting-kdump", Some(level + 1)),
            FenceState::AwaitingOperator => ("awaiting-operator", None),
            FenceState::Unfenced { .. } => ("unfenced", None),
            FenceState::Down(_) => ("down", None),
            FenceState::Journaling { failures: 0, .. } => ("journaling", None),
            FenceState::Journaling { .. } => ("journal-failed", None),
        };
        TargetStatus {
            node,
            phase: phase.into(),
            level,
            failed_rounds: self.rounds,
            down: match &self.state {
                FenceState::Down(r) => Some(r.clone()),
                _ => None,
            },
        }
    }

    /// Alive in this host's current view: it restarted, or this host itself rejoined
    /// and heard it anew. Membership never turns a Failed host back to Up in the same
    /// incarnation, so this is a fresh sign of life.
    fn back_again(&self, p: &PeerFacts) -> bool {
        matches!(
            p.state,
            HostState::Joining | HostState::Up | HostState::Suspect
        )
    }

    pub(super) fn tick(&mut self, p: &PeerFacts, ctx: &Ctx<'_>, out: &mut Vec<FenceAction>) {
        match self.state.clone() {
            FenceState::Down(r) => {
                if p.incarnation > r.incarnation
                    && matches!(p.state, HostState::Joining | HostState::Up)
                {
                    out.push(FenceAction::Event(FenceEvent::Rejoined {
                        target: p.node,
                        incarnation: p.incarnation,
                    }));
                    *self = Target::default();
                }
            }
            FenceState::Alive => {
                if matches!(p.state, HostState::Failed(_))
                    || (p.accuses_me && ctx.race_delay.is_none())
                {
                    self.failed_incarnation = p.incarnation.max(p.latest);
                    let delay = ctx.race_delay.unwrap_or_default();
                    self.state = FenceState::Pending {
                        level: 0,
                        not_before: ctx.now + delay,
                    };
                    self.tick(p, ctx, out);
                }
            }
            FenceState::Pending { level, not_before } => {
                if self.back_again(p) && !p.accuses_me {
                    // Alive before anyone fenced it; nothing of it was recovered.
                    *self = Target::default();
                    return;
                }
                if p.state == HostState::Unknown {
                    // This host rejoined and has not heard it yet: wait for the verdict.
                    return;
                }
                if !(ctx.quorate && ctx.coordinator) {
                    return;
                }
                if level >= ctx.levels.len() {
                    // No fence level configured for this host.
                    self.next_level(
                        ctx.now,
                        p.node,
                        level,
                        ctx.levels,
                        ctx.retry_backoff,
                        ctx.max_backoff,
                        out,
                    );
                    return;
                }
                if ctx.now < not_before {
                    if !self.race_noted && ctx.race_delay.is_some() {
                        self.race_noted = true;
                        let delay_ms = (not_before - ctx.now).as_millis() as u64;
                        out.push(FenceAction::Event(FenceEvent::RaceDelay {
                            target: p.node,
                            delay_ms,
                        }));
                    }
                    return;
                }
                self.start(ctx.now, p.node, level, ctx.levels, out);
                if matches!(self.state, FenceState::WaitingKdump { .. }) {
                    self.tick(p, ctx, out);
                }
            }
            FenceState::WaitingKdump { level, until } => {
                if p.kdump_proof() {
                    self.down(p.node, ctx.me, Proof::KdumpNotice, out);
                } else if ctx.now >= until {
                    let detail = "no panic notice arrived in time".to_string();
                    out.push(FenceAction::Event(FenceEvent::LevelFailed {
                        target: p.node,
                        level: level + 1,
                        detail,
                    }));
                    self.next_level(
                        ctx.now,
                        p.node,
                        level + 1,
                        ctx.levels,
                        ctx.retry_backoff,
                        ctx.max_backoff,
                        out,
                    );
                }
            }
            FenceState::Unfenced { retry_at } => {
                if self.back_again(p) && !p.accuses_me {
                    *self = Target::default();
                } else if ctx.now >= retry_at {
                    self.state = FenceState::Pending {
                        level: 0,
                        not_before: retry_at,
                    };
                    self.tick(p, ctx, out);
                }
            }
            FenceState::Journaling {
                record,
                retry_at,
                failures,
            } => {
                if p.incarnation > record.incarnation
                    && matches!(p.state, HostState::Joining | HostState::Up)
                {
                    // Back in a new life before its DOWN could be written: nothing was
                    // recovered, and the journal learns it rejoined after the record.
                    out.push(FenceAction::Event(FenceEvent::Rejoined {
                        target: p.node,
                        incarnation: p.incarnation,
                    }));
                    *self = Target::default();
                } else if retry_at.is_some_and(|at| ctx.now >= at) {
                    self.state = FenceState::Journaling {
                        record: record.clone(),
                        retry_at: None,
                        failures,
                    };
                    out.push(FenceAction::JournalDown(record));
                }
            }
            FenceState::Running { .. } | FenceState::AwaitingOperator => {}
        }
    }

    /// Whether a DOWN is decided: held, or being journaled.
    pub(super) fn decided(&self) -> bool {
        matches!(
            self.state,
            FenceState::Down(_) | FenceState::Journaling { .. }
        )
    }

    /// Asks for `record` to be journaled; it is DOWN once that is confirmed.
    pub(super) fn journal(&mut self, record: DownRecord, out: &mut Vec<FenceAction>) {
        self.state = FenceState::Journaling {
            record: record.clone(),
            retry_at: None,
            failures: 0,
        };
        out.push(FenceAction::JournalDown(record));
    }

    /// Drops a fence that is decided but not running (after this host stalled).
    pub(super) fn forget_pending(&mut self) {
        if matches!(
            self.state,
            FenceState::Pending { .. }
                | FenceState::Unfenced { .. }
                | FenceState::WaitingKdump { .. }
        ) {
            *self = Target {
                rounds: self.rounds,
                ..Target::default()
            };
        }
    }

    /// Starts `level` now (the caller checked quorum and role where required).
    pub(super) fn start(
        &mut self,
        now: Duration,
        target: NodeId,
        level: usize,
        levels: &[LevelKind],
        out: &mut Vec<FenceAction>,
    ) {
        let Some(kind) = levels.get(level) else {
            // Callers only pass existing levels; no level at all is handled by next_level.
            self.state = FenceState::Pending {
                level: 0,
                not_before: now,
            };
            return;
        };
        out.push(FenceAction::Event(FenceEvent::Started {
            target,
            level: level + 1,
        }));
        match kind {
            LevelKind::Agents(devices) => {
                self.state = FenceState::Running { level };
                out.push(FenceAction::RunLevel {
                    target,
                    level,
                    devices: devices.clone(),
                });
            }
            LevelKind::Kdump { wait } => {
                self.state = FenceState::WaitingKdump {
                    level,
                    until: now + *wait,
                }
            }
            LevelKind::Manual => {
                self.state = FenceState::AwaitingOperator;
                out.push(FenceAction::Event(FenceEvent::AwaitingOperator { target }));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn next_level(
        &mut self,
        now: Duration,
        target: NodeId,
        level: usize,
        levels: &[LevelKind],
        base: Duration,
        max: Duration,
        out: &mut Vec<FenceAction>,
    ) {
        if level < levels.len() {
            self.state = FenceState::Pending {
                level,
                not_before: now,
            };
            return;
        }
        self.rounds += 1;
        if levels.is_empty() {
            // Nothing to run: say so once, then only an operator can help.
            self.state = FenceState::Unfenced {
                retry_at: now + max,
            };
            if self.rounds == 1 {
                out.push(FenceAction::Event(FenceEvent::NoFenceLevels { target }));
            }
            return;
        }
        let wait = backoff(self.rounds, base, max);
        self.state = FenceState::Unfenced {
            retry_at: now + wait,
        };
        out.push(FenceAction::Event(FenceEvent::AllLevelsFailed {
            target,
            round: self.rounds,
            retry_in_ms: wait.as_millis() as u64,
        }));
    }

    fn down(&mut self, target: NodeId, me: NodeId, proof: Proof, out: &mut Vec<FenceAction>) {
        let record = DownRecord {
            target,
            incarnation: self.failed_incarnation,
            proof,
            by: me,
        };
        self.journal(record, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_level_result(
        &mut self,
        now: Duration,
        target: NodeId,
        me: NodeId,
        level: usize,
        ok: bool,
        detail: String,
        levels: &[LevelKind],
        base: Duration,
        max: Duration,
        out: &mut Vec<FenceAction>,
    ) {
        if self.state != (FenceState::Running { level }) {
            return;
        }
        if ok {
            let devices = match levels.get(level) {
                Some(LevelKind::Agents(d)) => d.clone(),
                _ => Vec::new(),
            };
            self.down(target, me, Proof::PowerOff { devices }, out);
        } else {
            out.push(FenceAction::Event(FenceEvent::LevelFailed {
                target,
                level: level + 1,
                detail,
            }));
            self.next_level(now, target, level + 1, levels, base, max, out);
        }
    }
}
