//! The fencing capability of the host core: the fencing machine
//! ([`crate::fencing::Fencing`]) fed with the membership's view, its actions turned into
//! effects (run a level, journal, report), and the fencing journal's health. A DOWN is
//! reported, shared and acted on only once its record is journaled.

use std::time::Duration;

use crate::config::NodeId;
use crate::fencing::{DownRecord, FenceAction, FenceEvent, Fencing, Refusal, View};
use crate::host::effect::{Effect, JournalHealth};

/// The fencing machine and the journal's health.
#[derive(Debug)]
pub struct FenceCore {
    machine: Fencing,
    /// Why the latest journal write failed and how many failed since the last success.
    journal_problem: Option<(String, u64)>,
}

impl FenceCore {
    /// Around `machine`.
    pub fn new(machine: Fencing) -> Self {
        FenceCore {
            machine,
            journal_problem: None,
        }
    }

    /// The machine, for status.
    pub fn machine(&self) -> &Fencing {
        &self.machine
    }

    /// Restores the DOWN decisions read back from the journal.
    pub fn restore(&mut self, records: Vec<DownRecord>) {
        self.machine.restore(records);
    }

    /// Records this host holds DOWN, for heartbeats and notices.
    pub fn down_records(&self) -> Vec<DownRecord> {
        self.machine.down_records()
    }

    /// Why the journal cannot be written, and how many writes failed in a row, while
    /// that is so.
    pub fn journal_problem(&self) -> Option<(&str, u64)> {
        self.journal_problem
            .as_ref()
            .map(|(why, n)| (why.as_str(), *n))
    }

    /// Advances the machine with the membership view.
    pub fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Effect>) {
        let actions = self.machine.tick(now, view);
        perform(actions, out);
    }

    /// A fence level finished.
    pub fn on_level_result(
        &mut self,
        now: Duration,
        (target, level): (NodeId, usize),
        ok: bool,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        let actions = self.machine.on_level_result(now, target, level, ok, detail);
        perform(actions, out);
    }

    /// DOWN records a peer's heartbeat carried.
    pub fn on_peer_downs(
        &mut self,
        records: &[DownRecord],
        membership: &crate::membership::Membership,
        now: Duration,
        out: &mut Vec<Effect>,
    ) {
        let actions = self.machine.on_peer_downs(records, membership, now);
        perform(actions, out);
    }

    /// How a journal write went: the DOWN it completes, or that it failed, and how the
    /// journal's health changed.
    pub fn on_journaled(
        &mut self,
        now: Duration,
        down: Option<&DownRecord>,
        result: Result<(), String>,
        out: &mut Vec<Effect>,
    ) {
        let health = match (&result, self.journal_problem.take()) {
            (Ok(()), None) => JournalHealth::Same,
            (Ok(()), Some((_, failures))) => JournalHealth::Recovered(failures),
            (Err(why), None) => {
                self.journal_problem = Some((why.clone(), 1));
                JournalHealth::Failing(why.clone())
            }
            (Err(why), Some((_, failures))) => {
                self.journal_problem = Some((why.clone(), failures + 1));
                JournalHealth::Same
            }
        };
        if result.is_err() {
            out.push(Effect::Count("journal_write_errors"));
        }
        if health != JournalHealth::Same {
            out.push(Effect::JournalHealth(health));
        }
        if let Some(record) = down {
            let actions = self.machine.on_journaled(now, record, result);
            perform(actions, out);
        }
    }

    /// `hvctl fence`: starts fencing `target` from level 1.
    pub fn request_fence(&mut self, now: Duration, target: NodeId) -> Result<Vec<Effect>, Refusal> {
        let actions = self.machine.request_fence(now, target)?;
        let mut out = Vec::new();
        perform(actions, &mut out);
        Ok(out)
    }

    /// `hvctl host confirm-down`: `target` DOWN on an operator's word, once journaled.
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Vec<Effect>, Refusal> {
        let actions = self.machine.confirm_down(target)?;
        let mut out = Vec::new();
        perform(actions, &mut out);
        Ok(out)
    }
}

/// The effects of the machine's actions: a DOWN comes only once it is written, and a
/// failed write is not written again; the rest is history, written in order, then
/// reported.
fn perform(actions: Vec<FenceAction>, out: &mut Vec<Effect>) {
    for a in actions {
        match a {
            FenceAction::RunLevel {
                target,
                level,
                devices,
            } => out.push(Effect::RunFenceLevel {
                target,
                level,
                devices,
            }),
            FenceAction::JournalDown(record) => out.push(Effect::Journal {
                event: FenceEvent::Down(record.clone()),
                down: Some(record),
            }),
            FenceAction::Event(e) => {
                if !matches!(e, FenceEvent::Down(_) | FenceEvent::JournalFailed { .. }) {
                    out.push(Effect::Journal {
                        event: e.clone(),
                        down: None,
                    });
                }
                out.push(Effect::Fence(e));
            }
        }
    }
}
