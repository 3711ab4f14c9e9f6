//! The fencing driver: performs what the host core's fencing asks
//! ([`hvcluster_common::host::FenceCore`]): runs fence levels as child processes, and
//! journals every decision through the writer thread of [`crate::fence_journal`], off
//! the driver loop (a DOWN is reported only once its record is on disk: the writer's
//! result goes back to the core); restores DOWN decisions after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hvcluster_common::config::{ClusterConfig, FenceDevice, NodeId};
use hvcluster_common::fencing::{DownRecord, FenceEvent};
use tokio::sync::mpsc;

use crate::agent::Input;
use crate::fence_journal::{FileStore, Store, Writer};
use crate::journal::{JournalError, Record};

pub use hvcluster_common::host::JournalHealth;

/// File name of the fencing journal inside the state directory.
pub const JOURNAL_FILE: &str = "fencing.journal";

/// Path of the fencing journal for a state directory.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JOURNAL_FILE)
}

/// The fencing journal's writer and the fence devices.
pub struct FenceDriver {
    writer: Writer,
    journal_path: PathBuf,
    /// What was wrong with the journal found at start, until reported.
    opened_problem: Option<String>,
    devices: BTreeMap<String, FenceDevice>,
    tx: mpsc::Sender<Input>,
}

impl std::fmt::Debug for FenceDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceDriver").finish_non_exhaustive()
    }
}

/// DOWN decisions still standing after replaying `records` in order.
pub fn standing_downs(records: &[Record<FenceEvent>]) -> Vec<DownRecord> {
    let mut down: BTreeMap<NodeId, DownRecord> = BTreeMap::new();
    for r in records {
        match &r.body {
            FenceEvent::Down(d) => {
                down.insert(d.target, d.clone());
            }
            FenceEvent::Rejoined { target, .. } => {
                down.remove(target);
            }
            _ => {}
        }
    }
    down.into_values().collect()
}

impl FenceDriver {
    /// Opens the journal; returns the DOWN decisions it holds, for the core.
    pub fn open(
        config: &ClusterConfig,
        tx: mpsc::Sender<Input>,
    ) -> Result<(FenceDriver, Vec<DownRecord>), JournalError> {
        let path = journal_path(&config.cluster.state_dir);
        let (journal, records, problem) = crate::fence_journal::open_or_set_aside(&path)?;
        let restored = standing_downs(&records);
        let store = FileStore::new(journal);
        let mut driver =
            FenceDriver::with_store(config, tx, store).map_err(|cause| JournalError::Io {
                path,
                action: "start the writer thread of",
                cause,
            })?;
        driver.opened_problem = problem;
        Ok((driver, restored))
    }

    /// A driver whose records go to `store`.
    pub fn with_store(
        config: &ClusterConfig,
        tx: mpsc::Sender<Input>,
        store: impl Store,
    ) -> std::io::Result<FenceDriver> {
        let writer = Writer::spawn(store, tx.clone())?;
        let devices = config
            .fence_devices
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        Ok(FenceDriver {
            writer,
            journal_path: journal_path(&config.cluster.state_dir),
            opened_problem: None,
            devices,
            tx,
        })
    }

    /// What was wrong with the journal found at start (moved aside), once.
    pub fn take_opened_problem(&mut self) -> Option<String> {
        self.opened_problem.take()
    }

    /// Where the journal lives, for `hvctl fence history`.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Writes `event` (fsync); with `down`, the result goes back as
    /// [`Input::Journaled`].
    pub fn journal(&self, event: FenceEvent, down: Option<DownRecord>) {
        self.writer.write(event, down);
    }

    /// Runs every device of level `level` against `target`; the result goes back as
    /// [`Input::FenceResult`].
    pub fn run_level(&self, target: NodeId, level: usize, names: Vec<String>) {
        let devices: Vec<FenceDevice> = names
            .iter()
            .filter_map(|n| self.devices.get(n).cloned())
            .collect();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (ok, detail) = if devices.len() == names.len() {
                crate::fence_runner::run_level(&devices, None).await
            } else {
                (
                    false,
                    format!(
                        "level {} names devices that are not configured: {}",
                        level + 1,
                        names.join(", ")
                    ),
                )
            };
            let _ = tx
                .send(Input::FenceResult {
                    target,
                    level,
                    ok,
                    detail,
                })
                .await;
        });
    }
}

/// Subject, kind and message of a fencing event for the event log; `name` maps node
/// ids to host names.
pub fn describe(e: &FenceEvent, name: impl Fn(NodeId) -> String) -> (String, &'static str, String) {
    match e {
        FenceEvent::Started { target, level } => {
            let n = name(*target);
            (
                n.clone(),
                "fence_started",
                format!("{n}: fencing, level {level}"),
            )
        }
        FenceEvent::RaceDelay { target, delay_ms } => {
            let n = name(*target);
            let msg = format!("{n}: two-node race: this host has the lower survival priority and waits {delay_ms} ms before fencing");
            (n, "fence_race_delay", msg)
        }
        FenceEvent::LevelFailed {
            target,
            level,
            detail,
        } => {
            let n = name(*target);
            (
                n.clone(),
                "fence_level_failed",
                format!("{n}: fence level {level} failed: {detail}"),
            )
        }
        FenceEvent::AllLevelsFailed {
            target,
            round,
            retry_in_ms,
        } => {
            let n = name(*target);
            let msg = format!(
                "{n}: EVERY FENCE LEVEL FAILED (round {round}); it stays Failed-unfenced and nothing of it is recovered; \
                 retrying in {retry_in_ms} ms. Fix the fence device, or check that {n} is off and run: hvctl host confirm-down {n}"
            );
            (n, "fence_failed", msg)
        }
        FenceEvent::NoFenceLevels { target } => {
            let n = name(*target);
            let msg = format!(
                "{n}: Failed, and no fence level is configured for it: it stays Failed-unfenced and nothing of it is \
                 recovered. Add fence_levels for {n}, or check that it is off and run: hvctl host confirm-down {n}"
            );
            (n, "fence_unconfigured", msg)
        }
        FenceEvent::AwaitingOperator { target } => {
            let n = name(*target);
            let msg = format!("{n}: manual fence level: check that {n} is off, then run: hvctl host confirm-down {n}");
            (n, "fence_manual", msg)
        }
        FenceEvent::Down(r) => {
            let n = name(r.target);
            let proof = proof_text(r, &name);
            (n.clone(), "host_down", format!("{n}: DOWN ({proof})"))
        }
        FenceEvent::Rejoined {
            target,
            incarnation,
        } => {
            let n = name(*target);
            (
                n.clone(),
                "fence_cleared",
                format!("{n}: back after fencing (incarnation {incarnation}); no longer DOWN"),
            )
        }
        FenceEvent::JournalFailed {
            target,
            detail,
            retry_in_ms,
        } => {
            let n = name(*target);
            let msg = format!(
                "{n}: off with proof, but its DOWN cannot be written to the fencing journal ({detail}); \
                 it is NOT DOWN yet: no host is told, nothing of it is recovered until the write succeeds; \
                 retrying every {retry_in_ms} ms. Check the state directory's disk (free space, read-only \
                 mount, file attributes)"
            );
            (n, "fence_journal_failed", msg)
        }
    }
}

/// What proves a DOWN record and who obtained it, e.g. `powered off and confirmed by h1
/// via ipmi-h3`.
pub fn proof_text(r: &DownRecord, name: impl Fn(NodeId) -> String) -> String {
    hvcluster_common::host::describe::proof_text(r, name)
}

#[cfg(test)]
pub mod bench;
