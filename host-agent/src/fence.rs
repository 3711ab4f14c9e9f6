//! The fencing driver: feeds the fencing core the membership view, runs the fence
//! levels it asks for as child processes, journals every decision (through the writer
//! thread of [`crate::fence_journal`], off the driver loop; a DOWN is reported only once
//! its record is on disk), and restores DOWN decisions after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvcluster_common::config::{ClusterConfig, FenceDevice, NodeId};
use hvcluster_common::fencing::{
    DownRecord, FenceAction, FenceEvent, Fencing, FencingConfig, Refusal, View,
};
use hvcluster_common::membership::Membership;
use tokio::sync::mpsc;

use crate::agent::Input;
use crate::fence_journal::{FileStore, Store, Writer};
use crate::journal::{JournalError, Record};

/// File name of the fencing journal inside the state directory.
pub const JOURNAL_FILE: &str = "fencing.journal";

/// Path of the fencing journal for a state directory.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JOURNAL_FILE)
}

/// The fencing machine with its journal and device table.
pub struct FenceDriver {
    machine: Fencing,
    writer: Writer,
    journal_path: PathBuf,
    /// Why the latest journal write failed and how many failed since the last success.
    journal_problem: Option<(String, u64)>,
    /// What was wrong with the journal found at start, until reported.
    opened_problem: Option<String>,
    devices: BTreeMap<String, FenceDevice>,
    tx: mpsc::Sender<Input>,
}

/// How the journal's health changed with a write's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalHealth {
    /// No change.
    Same,
    /// The first failed write after a success: why.
    Failing(String),
    /// A write succeeded after this many failed ones.
    Recovered(u64),
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
    /// Opens the journal and restores the DOWN decisions it holds.
    pub fn open(
        config: &ClusterConfig,
        me: NodeId,
        tx: mpsc::Sender<Input>,
    ) -> Result<(FenceDriver, Vec<DownRecord>), JournalError> {
        let path = journal_path(&config.cluster.state_dir);
        let (journal, records, problem) = crate::fence_journal::open_or_set_aside(&path)?;
        let restored = standing_downs(&records);
        let store = FileStore::new(journal);
        let mut driver =
            FenceDriver::with_store(config, me, tx, store).map_err(|cause| JournalError::Io {
                path,
                action: "start the writer thread of",
                cause,
            })?;
        driver.machine.restore(restored.clone());
        driver.opened_problem = problem;
        Ok((driver, restored))
    }

    /// A driver whose records go to `store` (which starts empty of DOWN decisions).
    pub fn with_store(
        config: &ClusterConfig,
        me: NodeId,
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
            machine: Fencing::new(FencingConfig::from_cluster(config, me)),
            writer,
            journal_path: journal_path(&config.cluster.state_dir),
            journal_problem: None,
            opened_problem: None,
            devices,
            tx,
        })
    }

    /// How a journal write went (an [`Input::Journaled`]): returns the events to
    /// report (the DOWN it completes, or that it failed) and how the journal's health
    /// changed.
    pub fn on_journaled(
        &mut self,
        now: Duration,
        down: Option<&DownRecord>,
        result: Result<(), String>,
    ) -> (Vec<FenceEvent>, JournalHealth) {
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
        let events = match down {
            Some(record) => {
                let actions = self.machine.on_journaled(now, record, result);
                self.perform(actions)
            }
            None => Vec::new(),
        };
        (events, health)
    }

    /// What was wrong with the journal found at start (moved aside), once.
    pub fn take_opened_problem(&mut self) -> Option<String> {
        self.opened_problem.take()
    }

    /// Why the journal cannot be written, and how many writes failed in a row, while
    /// that is so.
    pub fn journal_problem(&self) -> Option<(&str, u64)> {
        self.journal_problem
            .as_ref()
            .map(|(why, n)| (why.as_str(), *n))
    }

    /// The core's view of the membership right now.
    pub fn view(membership: &Membership, now: Duration) -> View {
        View::of(membership, now)
    }

    /// Advances the machine; returns the events to report (queued for the journal).
    pub fn tick(&mut self, now: Duration, view: &View) -> Vec<FenceEvent> {
        let actions = self.machine.tick(now, view);
        self.perform(actions)
    }

    /// A level finished.
    pub fn on_level_result(
        &mut self,
        now: Duration,
        target: NodeId,
        level: usize,
        ok: bool,
        detail: String,
    ) -> Vec<FenceEvent> {
        let actions = self.machine.on_level_result(now, target, level, ok, detail);
        self.perform(actions)
    }

    /// DOWN records a peer's heartbeat carried.
    pub fn on_peer_downs(
        &mut self,
        records: &[DownRecord],
        membership: &Membership,
        now: Duration,
    ) -> Vec<FenceEvent> {
        let actions = self.machine.on_peer_downs(records, membership, now);
        self.perform(actions)
    }

    /// Records this host holds DOWN, for heartbeats.
    pub fn down_records(&self) -> Vec<DownRecord> {
        self.machine.down_records()
    }

    /// The machine, for status.
    pub fn machine(&self) -> &Fencing {
        &self.machine
    }

    /// `hvctl fence`: starts fencing `target` from level 1; returns the events to
    /// report (queued for the journal).
    pub fn request_fence(
        &mut self,
        now: Duration,
        target: NodeId,
    ) -> Result<Vec<FenceEvent>, Refusal> {
        let actions = self.machine.request_fence(now, target)?;
        Ok(self.perform(actions))
    }

    /// `hvctl host confirm-down`: declares `target` DOWN on an operator's word, once
    /// the record is journaled; returns the events to report.
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Vec<FenceEvent>, Refusal> {
        let actions = self.machine.confirm_down(target)?;
        Ok(self.perform(actions))
    }

    /// Where the journal lives, for `hvctl fence history`.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    fn perform(&mut self, actions: Vec<FenceAction>) -> Vec<FenceEvent> {
        let mut events = Vec::new();
        for a in actions {
            match a {
                FenceAction::RunLevel {
                    target,
                    level,
                    devices,
                } => self.spawn_level(target, level, devices),
                FenceAction::JournalDown(record) => {
                    self.writer
                        .write(FenceEvent::Down(record.clone()), Some(record));
                }
                FenceAction::Event(e) => {
                    // A DOWN comes only once it is written; a failed write is not
                    // written again. The rest is history, written in order.
                    if !matches!(e, FenceEvent::Down(_) | FenceEvent::JournalFailed { .. }) {
                        self.writer.write(e.clone(), None);
                    }
                    events.push(e);
                }
            }
        }
        events
    }

    fn spawn_level(&self, target: NodeId, level: usize, names: Vec<String>) {
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
    use hvcluster_common::fencing::Proof;
    match &r.proof {
        Proof::PowerOff { devices } => format!(
            "powered off and confirmed by {} via {}",
            name(r.by),
            devices.join(", ")
        ),
        Proof::KdumpNotice => format!("its kdump panic notice, accepted by {}", name(r.by)),
        Proof::Operator => format!("an operator's confirmation on {}", name(r.by)),
    }
}
