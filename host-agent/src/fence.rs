//! The fencing driver: feeds the fencing core the membership view, runs the fence
//! levels it asks for as child processes, journals every decision before acting on it,
//! and restores DOWN decisions after a restart.

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
use crate::journal::{Journal, JournalError, Record};

/// File name of the fencing journal inside the state directory.
pub const JOURNAL_FILE: &str = "fencing.journal";

/// Path of the fencing journal for a state directory.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JOURNAL_FILE)
}

/// The fencing machine with its journal and device table.
pub struct FenceDriver {
    machine: Fencing,
    journal: Journal<FenceEvent>,
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
    /// Opens the journal and restores the DOWN decisions it holds.
    pub fn open(
        config: &ClusterConfig,
        me: NodeId,
        tx: mpsc::Sender<Input>,
    ) -> Result<(FenceDriver, Vec<DownRecord>), JournalError> {
        let (journal, records) = Journal::open(&journal_path(&config.cluster.state_dir))?;
        let restored = standing_downs(&records);
        let mut machine = Fencing::new(FencingConfig::from_cluster(config, me));
        machine.restore(restored.clone());
        let devices = config
            .fence_devices
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        Ok((
            FenceDriver {
                machine,
                journal,
                devices,
                tx,
            },
            restored,
        ))
    }

    /// The core's view of the membership right now.
    pub fn view(membership: &Membership, now: Duration) -> View {
        View::of(membership, now)
    }

    /// Advances the machine; returns the events to report (already journaled).
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
    /// report (already journaled).
    pub fn request_fence(
        &mut self,
        now: Duration,
        target: NodeId,
    ) -> Result<Vec<FenceEvent>, Refusal> {
        let actions = self.machine.request_fence(now, target)?;
        Ok(self.perform(actions))
    }

    /// `hvctl host confirm-down`: declares `target` DOWN on an operator's word; returns
    /// the DOWN event to report (already journaled).
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Vec<FenceEvent>, Refusal> {
        let actions = self.machine.confirm_down(target)?;
        Ok(self.perform(actions))
    }

    /// Where the journal lives, for `hvctl fence history`.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
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
                FenceAction::Event(e) => {
                    // Journal first: nothing may be recovered on a DOWN that a crash
                    // right now would forget.
                    if let Err(err) = self.journal.append(&e) {
                        tracing::error!(cause = %err, "cannot journal a fencing event; acting on it anyway is unsafe to forget");
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
