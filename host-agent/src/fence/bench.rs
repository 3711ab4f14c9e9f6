//! The host core's fencing with this driver performing its effects, as the agent loop
//! does, for tests of the journal and of the operator's commands.

use std::time::Duration;

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::fencing::{DownRecord, FenceEvent, Fencing, FencingConfig, Refusal, View};
use hvcluster_common::host::{Effect, FenceCore, JournalHealth};
use tokio::sync::mpsc;

use super::FenceDriver;
use crate::agent::Input;
use crate::fence_journal::Store;
use crate::journal::JournalError;

/// Fencing of host `me` and the driver that performs it.
#[derive(Debug)]
pub struct FenceBench {
    /// The core's fencing.
    pub core: FenceCore,
    /// The driver.
    pub driver: FenceDriver,
}

impl FenceBench {
    /// With the journal of `config`'s state directory, its DOWN decisions restored.
    pub fn open(
        config: &ClusterConfig,
        me: NodeId,
        tx: mpsc::Sender<Input>,
    ) -> Result<FenceBench, JournalError> {
        let (driver, restored) = FenceDriver::open(config, tx)?;
        let mut core = FenceCore::new(Fencing::new(FencingConfig::from_cluster(config, me)));
        core.restore(restored);
        Ok(FenceBench { core, driver })
    }

    /// With records going to `store`.
    pub fn with_store(
        config: &ClusterConfig,
        me: NodeId,
        tx: mpsc::Sender<Input>,
        store: impl Store,
    ) -> std::io::Result<FenceBench> {
        let driver = FenceDriver::with_store(config, tx, store)?;
        let core = FenceCore::new(Fencing::new(FencingConfig::from_cluster(config, me)));
        Ok(FenceBench { core, driver })
    }

    /// Performs `effects`; returns the fencing events among them.
    pub fn perform(&self, effects: Vec<Effect>) -> Vec<FenceEvent> {
        perform(&self.driver, effects).0
    }

    /// A tick with `view`.
    pub fn tick(&mut self, now: Duration, view: &View) -> Vec<FenceEvent> {
        let mut out = Vec::new();
        self.core.tick(now, view, &mut out);
        self.perform(out)
    }

    /// A journal write's result.
    pub fn on_journaled(
        &mut self,
        now: Duration,
        down: Option<&DownRecord>,
        result: Result<(), String>,
    ) -> (Vec<FenceEvent>, JournalHealth) {
        let mut out = Vec::new();
        self.core.on_journaled(now, down, result, &mut out);
        perform(&self.driver, out)
    }

    /// `hvctl host confirm-down`.
    pub fn confirm_down(&mut self, target: NodeId) -> Result<Vec<FenceEvent>, Refusal> {
        let effects = self.core.confirm_down(target)?;
        Ok(self.perform(effects))
    }

    /// Records held DOWN.
    pub fn down_records(&self) -> Vec<DownRecord> {
        self.core.down_records()
    }

    /// The machine.
    pub fn machine(&self) -> &Fencing {
        self.core.machine()
    }

    /// Why the journal cannot be written, while it cannot.
    pub fn journal_problem(&self) -> Option<(&str, u64)> {
        self.core.journal_problem()
    }

    /// The journal's path.
    pub fn journal_path(&self) -> &std::path::Path {
        self.driver.journal_path()
    }
}

/// Performs the fencing effects as the agent does; returns the events reported and the
/// journal's health change.
fn perform(driver: &FenceDriver, effects: Vec<Effect>) -> (Vec<FenceEvent>, JournalHealth) {
    let (mut events, mut health) = (Vec::new(), JournalHealth::Same);
    for e in effects {
        match e {
            Effect::Journal { event, down } => driver.journal(event, down),
            Effect::RunFenceLevel {
                target,
                level,
                devices,
            } => driver.run_level(target, level, devices),
            Effect::Fence(f) => events.push(f),
            Effect::JournalHealth(h) => health = h,
            _ => {}
        }
    }
    (events, health)
}
