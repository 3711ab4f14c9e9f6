//! Beginning a migration: its lock is journaled first (by the state writer thread), and
//! libvirt is asked only once the lock is on disk; a lock not written, or not within the
//! limit, calls the migration off (that decision:
//! `hvcluster_common::host::migration`).

use std::time::{Duration, Instant};

use hvcluster_common::admin::Response;
use hvcluster_common::host::migration::LockOutcome;
use hvcluster_common::migration::MigrationLock;
use hvcluster_libvirt::{Migrated, Migration};
use serde_json::json;
use tokio::sync::oneshot;

use super::state::{Begin, Preparing, Running};
use crate::agent::{Agent, Input};

/// How long past its own timeout a migration (or an export) may take before the
/// hypervisor is given up on.
const LIBVIRT_GRACE: Duration = Duration::from_secs(300);

impl Agent {
    /// Journals the lock; the migration begins once it is on disk.
    pub(super) fn begin_migration(
        &mut self,
        id: u64,
        lock: MigrationLock,
        job: Migration,
        reply: Option<oneshot::Sender<Response>>,
        conns: Vec<u64>,
        maintenance: bool,
    ) {
        let p = Preparing {
            id,
            lock,
            job,
            reply,
            waiting: Vec::new(),
            conns,
            deadline: Instant::now(),
            maintenance,
            hold_ms: 0,
            agreed: 0,
        };
        self.journal_lock(Begin::Migrate(p));
    }

    /// Queues the write of the lock of `then`, which begins once it is on disk.
    fn journal_lock(&mut self, then: Begin) {
        match self.saves.save_json(&self.migrations.journal, then.lock()) {
            Ok(seq) => {
                let since = self.now();
                self.migrations.journaling.wait(seq, since, then);
            }
            Err(why) => self.lock_not_journaled(then, why),
        }
    }

    /// The journal's writer wrote save `seq` of the lock file (or failed to).
    pub(in crate::agent) fn migration_saved(&mut self, seq: u64, result: Result<(), String>) {
        match self.migrations.journaling.saved(seq, result) {
            Some(LockOutcome::Begin(then)) => self.begin_journaled(then),
            Some(LockOutcome::CallOff(then, why)) => self.lock_not_journaled(then, why),
            None => {}
        }
    }

    /// Calls off a migration whose lock is not on disk within the limit.
    pub(in crate::agent) fn migration_save_overdue(&mut self) {
        let (now, file) = (self.now(), self.migrations.journal.display().to_string());
        if let Some(LockOutcome::CallOff(then, why)) =
            self.migrations.journaling.overdue(now, &file)
        {
            self.lock_not_journaled(then, why);
        }
    }

    /// A migration whose lock could not be journaled does not happen. A late write of
    /// the lock is undone.
    fn lock_not_journaled(&mut self, then: Begin, why: String) {
        self.saves.remove(&self.migrations.journal);
        match then {
            Begin::Migrate(p) => self.call_off(p, why),
            Begin::Export { lock, reply, .. } => {
                let name = lock.name.clone();
                let to = self.name(lock.to);
                self.member.events.record(
                    Some(&name),
                    "migration_refused",
                    format!("{name} is not moved to {to}: {why}"),
                    json!({ "domain": name, "to": to }),
                );
                if let Some(reply) = reply {
                    let _ = reply.send(Response::Refused {
                        message: format!("{why}; nothing was done"),
                    });
                }
            }
        }
    }

    /// The lock is on disk: the migration (or export) begins.
    fn begin_journaled(&mut self, then: Begin) {
        match then {
            Begin::Migrate(p) => self.begin_libvirt_migration(p),
            Begin::Export {
                id,
                lock,
                to,
                reply,
            } => self.begin_libvirt_export(id, lock, to, reply),
        }
    }

    /// Asks libvirt to move the domain, its lock journaled.
    fn begin_libvirt_migration(&mut self, p: Preparing) {
        let Preparing {
            id,
            lock,
            job,
            reply,
            conns,
            maintenance,
            ..
        } = p;
        let (own, to, mode) = (self.member.own_name.clone(), self.name(lock.to), lock.mode);
        self.member.events.record(
            Some(&lock.name),
            "migration_started",
            format!("{}: moving {mode} from {own} to {to}", lock.name),
            json!({ "domain": lock.name, "from": own, "to": to, "mode": mode }),
        );
        self.migrations.running = Some(Running {
            lock,
            reply,
            id,
            conns,
            start: false,
            maintenance,
        });
        self.send_heartbeats();
        let Some(libvirt) = self.libvirt.clone() else {
            return;
        };
        let tx = self.member.tx.clone();
        let progress_tx = tx.clone();
        // libvirt aborts the job at its timeout; a hypervisor that does not return long
        // after that is given up on.
        let limit = job.timeout + LIBVIRT_GRACE;
        self.member.spawn(async move {
            let result = crate::hv_call::call(&libvirt, limit, move |hv| {
                let progress = move |p| {
                    let _ = progress_tx.blocking_send(Input::MigrationProgress(p));
                };
                hv.migrate(&job, Duration::from_secs(1), Box::new(progress))
            })
            .await;
            let _ = tx.send(Input::Migrated(result)).await;
        });
    }

    /// Export/import of a stopped domain: its definition moves; no guest runs to ask.
    /// The lock is journaled first.
    pub(super) fn begin_export(
        &mut self,
        id: u64,
        lock: MigrationLock,
        to: (String, Vec<(String, String)>, bool),
        reply: Option<oneshot::Sender<Response>>,
    ) {
        self.journal_lock(Begin::Export {
            id,
            lock,
            to,
            reply,
        });
    }

    /// Asks libvirt to export the domain, its lock journaled.
    fn begin_libvirt_export(
        &mut self,
        id: u64,
        lock: MigrationLock,
        (dest_uri, rewrite, start): (String, Vec<(String, String)>, bool),
        reply: Option<oneshot::Sender<Response>>,
    ) {
        let (own, to) = (self.member.own_name.clone(), self.name(lock.to));
        self.member.events.record(
            Some(&lock.name),
            "migration_started",
            format!(
                "{}: moving its definition (export) from {own} to {to}",
                lock.name
            ),
            json!({ "domain": lock.name, "from": own, "to": to, "mode": lock.mode }),
        );
        let name = lock.name.clone();
        self.migrations.running = Some(Running {
            lock,
            reply,
            id,
            conns: Vec::new(),
            start,
            maintenance: false,
        });
        let Some(libvirt) = self.libvirt.clone() else {
            return;
        };
        let tx = self.member.tx.clone();
        self.member.spawn(async move {
            let began = Instant::now();
            let result = crate::hv_call::call(&libvirt, LIBVIRT_GRACE, move |hv| {
                hv.export(&name, &dest_uri, &rewrite, start)
            })
            .await
            .map(|_| Migrated {
                took_ms: began.elapsed().as_millis() as u64,
                downtime_ms: None,
            });
            let _ = tx.send(Input::Migrated(result)).await;
        });
    }
}
