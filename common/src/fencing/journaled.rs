//! The last step to DOWN: the record is on disk.
//!
//! A host acts on a DOWN (shares it, tells the guests, restarts domains) only once the
//! record survives a crash of this agent: otherwise a restarted agent would have
//! forgotten a decision the rest of the cluster already acted on, and could start
//! fencing or recovering all over again. Writing is the driver's job, off its heartbeat
//! path; this module only holds the DOWN until the driver says the write is done.

use std::time::Duration;

use super::target::FenceState;
use super::{DownRecord, FenceAction, FenceEvent, Fencing};
use crate::config::NodeId;

/// How long after a failed write the record is written again.
pub const JOURNAL_RETRY: Duration = Duration::from_secs(1);

impl Fencing {
    /// How writing `record` (asked by [`FenceAction::JournalDown`]) went: `Ok` makes the
    /// host DOWN (a `Down` event to act on); `Err` keeps it off the record, reports it
    /// the first time, and writes again after [`JOURNAL_RETRY`]. A result for a record
    /// no longer being written (the host rejoined meanwhile) changes nothing.
    pub fn on_journaled(
        &mut self,
        now: Duration,
        record: &DownRecord,
        result: Result<(), String>,
    ) -> Vec<FenceAction> {
        let mut out = Vec::new();
        let Some(t) = self.targets.get_mut(&record.target) else {
            return out;
        };
        let FenceState::Journaling {
            record: held,
            retry_at: None,
            failures,
        } = &t.state
        else {
            return out;
        };
        if held != record {
            return out;
        }
        match result {
            Ok(()) => {
                t.state = FenceState::Down(record.clone());
                out.push(FenceAction::Event(FenceEvent::Down(record.clone())));
            }
            Err(detail) => {
                let failures = failures + 1;
                t.state = FenceState::Journaling {
                    record: record.clone(),
                    retry_at: Some(now + JOURNAL_RETRY),
                    failures,
                };
                if failures == 1 {
                    out.push(FenceAction::Event(FenceEvent::JournalFailed {
                        target: record.target,
                        detail,
                        retry_in_ms: JOURNAL_RETRY.as_millis() as u64,
                    }));
                }
            }
        }
        out
    }

    /// Whether `target` is DOWN or being written down.
    pub fn decided(&self, target: NodeId) -> bool {
        self.targets.get(&target).is_some_and(|t| t.decided())
    }

    /// DOWN records waiting for the journal, with their failed writes so far.
    pub fn journaling(&self) -> Vec<(&DownRecord, u32)> {
        self.targets
            .values()
            .filter_map(|t| match &t.state {
                FenceState::Journaling {
                    record, failures, ..
                } => Some((record, *failures)),
                _ => None,
            })
            .collect()
    }
}
