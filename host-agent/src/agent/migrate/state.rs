//! What a host knows of migrations: the one it runs (or prepares), those that ended a
//! moment ago, one interrupted by a restart, and the other hosts' (from their
//! heartbeats); the lock's journal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::NodeId;
use hvcluster_common::migration::{MigrationLock, MigrationMode};
use hvcluster_libvirt::Migration;
use tokio::sync::oneshot;

/// How long a finished migration's lock stays in the heartbeats: both hosts list their
/// domains every second.
const LOCK_LINGER: Duration = Duration::from_secs(5);

/// The migrations this host knows of.
#[derive(Debug, Default)]
pub(in crate::agent) struct Migrations {
    pub(in crate::agent) journal: PathBuf,
    /// The one this host runs.
    pub(super) running: Option<Running>,
    /// One waiting for its guests' consent.
    pub(super) preparing: Option<Preparing>,
    /// One whose lock is being written to the journal: it begins once it is on disk.
    pub(super) journaling: hvcluster_common::host::migration::LockJournal<Begin>,
    /// Numbers the migrations of this agent (what the guests are asked about).
    pub(super) next_id: u64,
    /// Finished ones, still published until the listings caught up.
    pub(super) finished: Vec<(MigrationLock, Instant)>,
    /// One interrupted by a restart of this agent, settled at the first listing (a
    /// paused offline one once the destination says whether it runs it).
    pub(super) interrupted: Option<MigrationLock>,
    /// The wait for the destination's word on `interrupted` was reported.
    pub(super) interrupted_noted: bool,
    /// What the other hosts run, from their heartbeats.
    pub(super) remote: BTreeMap<NodeId, Vec<MigrationLock>>,
}

/// A move to make: `hvctl vm migrate`'s arguments, or one of an evacuation or failback.
#[derive(Debug, Clone)]
pub(in crate::agent) struct Move {
    pub(in crate::agent) name: String,
    pub(in crate::agent) to: String,
    pub(in crate::agent) mode: MigrationMode,
    pub(in crate::agent) max_downtime_ms: Option<u64>,
    pub(in crate::agent) timeout_s: Option<u64>,
    pub(in crate::agent) leave_paused: bool,
    pub(in crate::agent) start: bool,
    pub(in crate::agent) dry_run: bool,
    /// Part of host maintenance (evacuation or failback): no operator waits for it.
    pub(in crate::agent) maintenance: bool,
}

impl Move {
    /// `hvctl vm migrate`'s request as a move.
    pub(super) fn of(request: Request) -> Option<Move> {
        match request {
            Request::VmMigrate {
                name,
                to,
                mode,
                max_downtime_ms,
                timeout_s,
                leave_paused,
                start,
                dry_run,
            } => Some(Move {
                name,
                to,
                mode,
                max_downtime_ms,
                timeout_s,
                leave_paused,
                start,
                dry_run,
                maintenance: false,
            }),
            _ => None,
        }
    }
}

/// A migration under way.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) lock: MigrationLock,
    /// The operator waiting for its end.
    pub(super) reply: Option<oneshot::Sender<Response>>,
    /// The migration's number and the host links of the guests it moves.
    pub(super) id: u64,
    pub(super) conns: Vec<u64>,
    /// Export: started on the destination afterwards.
    pub(super) start: bool,
    /// Part of this host's evacuation or of a failback (no operator waits).
    pub(super) maintenance: bool,
}

/// What begins once the lock is on disk.
#[derive(Debug)]
pub(super) enum Begin {
    /// A live or offline migration whose guests agreed (or that has none).
    Migrate(Preparing),
    /// An export: the destination's URI, the path rewrites, start it there.
    Export {
        id: u64,
        lock: MigrationLock,
        to: (String, Vec<(String, String)>, bool),
        reply: Option<oneshot::Sender<Response>>,
    },
}

impl Begin {
    /// The lock to be journaled.
    pub(super) fn lock(&self) -> &MigrationLock {
        match self {
            Begin::Migrate(p) => &p.lock,
            Begin::Export { lock, .. } => lock,
        }
    }
}

/// A migration whose guests were asked whether they may be moved.
#[derive(Debug)]
pub(super) struct Preparing {
    pub(super) id: u64,
    pub(super) lock: MigrationLock,
    pub(super) job: Migration,
    pub(super) reply: Option<oneshot::Sender<Response>>,
    /// Guests (host links) that have not answered yet, and all of them.
    pub(super) waiting: Vec<u64>,
    pub(super) conns: Vec<u64>,
    pub(super) deadline: Instant,
    pub(super) maintenance: bool,
    /// The hold asked of the guests, ms.
    pub(super) hold_ms: u64,
    /// Guests that said yes.
    pub(super) agreed: usize,
}

/// How long the guests have to answer whether they may be moved.
pub(super) const ASK_LIMIT: Duration = Duration::from_secs(5);

impl Migrations {
    /// Opens the journal in `state_dir`; a lock found there is a migration this agent
    /// was running when it stopped.
    pub(in crate::agent) fn open(state_dir: &std::path::Path) -> (Self, Option<String>) {
        let journal = state_dir.join("migration.json");
        let (interrupted, problem) = match std::fs::read(&journal) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (
                None,
                Some(format!("cannot read {}: {e}", journal.display())),
            ),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(lock) => (Some(lock), None),
                Err(e) => {
                    let kept = match crate::apps::set_aside::set_aside(&journal) {
                        Ok(aside) => format!("kept as {}", aside.display()),
                        Err(why) => why,
                    };
                    (
                        None,
                        Some(format!(
                            "{} is unreadable ({e}); {kept}. If a migration was under way \
                             when the agent stopped, check with hvctl status on every host \
                             where its domain runs before starting it anywhere",
                            journal.display()
                        )),
                    )
                }
            },
        };
        let m = Migrations {
            journal,
            interrupted,
            ..Migrations::default()
        };
        (m, problem)
    }

    /// A migration is being prepared or runs here.
    pub(in crate::agent) fn busy(&self) -> bool {
        self.running.is_some() || self.preparing.is_some() || self.journaling.pending().is_some()
    }

    /// The lock of the migration prepared, being journaled or running here.
    pub(super) fn current(&self) -> Option<&MigrationLock> {
        let running = self.running.as_ref().map(|r| &r.lock);
        let preparing = || self.preparing.as_ref().map(|p| &p.lock);
        let journaling = || self.journaling.pending().map(Begin::lock);
        running.or_else(preparing).or_else(journaling)
    }

    /// The locks this host publishes.
    pub(in crate::agent) fn published(&mut self) -> Vec<MigrationLock> {
        self.finished.retain(|(_, at)| at.elapsed() < LOCK_LINGER);
        let running = self.running.iter().map(|r| r.lock.clone());
        let interrupted = self.interrupted.iter().cloned();
        running
            .chain(interrupted)
            .chain(self.finished.iter().map(|(l, _)| MigrationLock {
                ended: true,
                ..l.clone()
            }))
            .collect()
    }

    /// Every lock known in the cluster, this host's included.
    pub(in crate::agent) fn all(&mut self) -> Vec<MigrationLock> {
        let mut all = self.published();
        all.extend(self.remote.values().flatten().cloned());
        all
    }

    /// Every lock known, for status (without dropping expired ones: `&self`).
    pub(in crate::agent) fn all_known(&self) -> Vec<MigrationLock> {
        let running = self.running.iter().map(|r| r.lock.clone());
        running
            .chain(self.interrupted.iter().cloned())
            .chain(self.remote.values().flatten().cloned())
            .collect()
    }

    /// A heartbeat of `from` arrived with its locks.
    /// Returns whether they changed.
    pub(in crate::agent) fn heard(&mut self, from: NodeId, locks: &[MigrationLock]) -> bool {
        let before = if locks.is_empty() {
            self.remote.remove(&from)
        } else {
            self.remote.insert(from, locks.to_vec())
        };
        before.as_deref() != Some(locks) && !(before.is_none() && locks.is_empty())
    }
}
