//! `hvctl vm migrate`: moving a domain of this host to another host, cluster-aware.
//!
//! The request is checked by the pure core ([`hvcluster_common::migration::check`]):
//! the domain runs here, the destination is Up, has reported its capacity and has room.
//! The migration lock is then journaled (`<state_dir>/migration.json`) before libvirt is
//! asked, and carried in this host's heartbeats while the migration runs and for a few
//! seconds after (until both hosts have listed their domains again), so that no host
//! takes the domain's two instances for a double run. A restart of this agent midway
//! finds the lock: once the hypervisor has listed its domains, the agent says where the
//! domain is (here, resumed if an offline migration had paused it, or at the
//! destination) and drops the lock; nothing is repeated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::NodeId;
use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::migration::{self, Destination, MigrationLock, MigrationMode};
use hvcluster_libvirt::{Migrated, Migration, Progress};
use serde_json::json;
use tokio::sync::oneshot;

use super::{Agent, Input};

/// How long a finished migration's lock stays in the heartbeats: both hosts list their
/// domains every second.
const LOCK_LINGER: Duration = Duration::from_secs(5);

/// The migrations this host knows of.
#[derive(Debug, Default)]
pub(super) struct Migrations {
    journal: PathBuf,
    /// The one this host runs.
    running: Option<Running>,
    /// One waiting for its guests' consent.
    preparing: Option<Preparing>,
    /// Numbers the migrations of this agent (what the guests are asked about).
    next_id: u64,
    /// Finished ones, still published until the listings caught up.
    finished: Vec<(MigrationLock, Instant)>,
    /// One interrupted by a restart of this agent, settled at the first listing.
    interrupted: Option<MigrationLock>,
    /// What the other hosts run, from their heartbeats.
    remote: BTreeMap<NodeId, Vec<MigrationLock>>,
}

/// A move to make: `hvctl vm migrate`'s arguments, or one of an evacuation or failback.
#[derive(Debug, Clone)]
pub(super) struct Move {
    pub name: String,
    pub to: String,
    pub mode: MigrationMode,
    pub max_downtime_ms: Option<u64>,
    pub timeout_s: Option<u64>,
    pub leave_paused: bool,
    pub start: bool,
    pub dry_run: bool,
    /// Part of host maintenance (evacuation or failback): no operator waits for it.
    pub maintenance: bool,
}

impl Move {
    /// `hvctl vm migrate`'s request as a move.
    fn of(request: Request) -> Option<Move> {
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
struct Running {
    lock: MigrationLock,
    /// The operator waiting for its end.
    reply: Option<oneshot::Sender<Response>>,
    /// The migration's number and the host links of the guests it moves.
    id: u64,
    conns: Vec<u64>,
    /// Export: started on the destination afterwards.
    start: bool,
    /// Part of this host's evacuation or of a failback (no operator waits).
    maintenance: bool,
}

/// A migration whose guests were asked whether they may be moved.
#[derive(Debug)]
struct Preparing {
    id: u64,
    lock: MigrationLock,
    job: Migration,
    reply: Option<oneshot::Sender<Response>>,
    /// Guests (host links) that have not answered yet, and all of them.
    waiting: Vec<u64>,
    conns: Vec<u64>,
    deadline: Instant,
    maintenance: bool,
    /// The hold asked of the guests, ms.
    hold_ms: u64,
    /// Guests that said yes.
    agreed: usize,
}

/// How long the guests have to answer whether they may be moved.
const ASK_LIMIT: Duration = Duration::from_secs(5);

impl Migrations {
    /// Opens the journal in `state_dir`; a lock found there is a migration this agent
    /// was running when it stopped.
    pub(super) fn open(state_dir: &std::path::Path) -> (Self, Option<String>) {
        let journal = state_dir.join("migration.json");
        let (interrupted, problem) = match std::fs::read(&journal) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (
                None,
                Some(format!("cannot read {}: {e}", journal.display())),
            ),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(lock) => (Some(lock), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "{} is unreadable ({e}); ignored",
                        journal.display()
                    )),
                ),
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
    pub(super) fn busy(&self) -> bool {
        self.running.is_some() || self.preparing.is_some()
    }

    /// The locks this host publishes.
    pub(super) fn published(&mut self) -> Vec<MigrationLock> {
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
    pub(super) fn all(&mut self) -> Vec<MigrationLock> {
        let mut all = self.published();
        all.extend(self.remote.values().flatten().cloned());
        all
    }

    /// Every lock known, for status (without dropping expired ones: `&self`).
    pub(super) fn all_known(&self) -> Vec<MigrationLock> {
        let running = self.running.iter().map(|r| r.lock.clone());
        running
            .chain(self.interrupted.iter().cloned())
            .chain(self.remote.values().flatten().cloned())
            .collect()
    }

    /// A heartbeat of `from` arrived with its locks.
    pub(super) fn heard(&mut self, from: NodeId, locks: &[MigrationLock]) {
        if locks.is_empty() {
            self.remote.remove(&from);
        } else {
            self.remote.insert(from, locks.to_vec());
        }
    }

    fn save(&self, lock: Option<&MigrationLock>) -> Result<(), String> {
        let what = |e: std::io::Error| format!("cannot write {}: {e}", self.journal.display());
        match lock {
            None => match std::fs::remove_file(&self.journal) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(what(e)),
                _ => Ok(()),
            },
            Some(l) => {
                let tmp = self.journal.with_extension("json.tmp");
                let bytes = serde_json::to_vec_pretty(l).unwrap_or_default();
                std::fs::write(&tmp, bytes).map_err(what)?;
                let f = std::fs::File::open(&tmp).map_err(what)?;
                f.sync_all().map_err(what)?;
                std::fs::rename(&tmp, &self.journal).map_err(what)
            }
        }
    }
}

impl Agent {
    /// `hvctl vm migrate`.
    pub(super) fn vm_migrate(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let Some(order) = Move::of(request) else {
            return;
        };
        let (name, to, mode) = (order.name.clone(), order.to.clone(), order.mode);
        let what = format!("hvctl vm migrate {name} --to {to} --mode {mode}");
        let mut reply = Some(reply);
        let outcome = self.start_move(order, &mut reply);
        let Some(reply) = reply else {
            return;
        };
        let response = match outcome {
            Ok(message) => Response::Done { message },
            Err(message) => {
                self.member.events.record(
                    Some(&name),
                    "operator",
                    format!("operator: {what}: refused: {message}"),
                    json!({ "command": what, "domain": name, "accepted": false }),
                );
                Response::Refused { message }
            }
        };
        let _ = reply.send(response);
    }

    /// Checks a move and starts it. The operator's `reply` is taken when the move
    /// begins (answered at its end); otherwise the result is the answer: a dry run's
    /// text, or the refusal.
    pub(super) fn start_move(
        &mut self,
        order: Move,
        reply: &mut Option<oneshot::Sender<Response>>,
    ) -> Result<String, String> {
        let Move {
            name,
            to,
            mode,
            max_downtime_ms,
            timeout_s,
            leave_paused,
            start,
            dry_run,
            maintenance,
        } = order;
        if self.libvirt.is_none() {
            let message = "this host has no [hypervisor] uri: it controls no domains".into();
            return Err(message);
        }
        let busy = (self.migrations.running.as_ref().map(|r| &r.lock)).or(self
            .migrations
            .preparing
            .as_ref()
            .map(|p| &p.lock));
        if let Some(l) = busy {
            let message = format!(
                "this host is moving {} to {} already: one migration at a time",
                l.name,
                self.name(l.to)
            );
            return Err(message);
        }
        let Some(dest) = self.config.host(&to).map(|h| h.node_id) else {
            let message = format!("there is no host {to:?} in {}", self.config.cluster.name);
            return Err(message);
        };
        let me = self.member.me;
        let domain = self
            .domains
            .iter()
            .find(|d| d.name == name || d.uuid == name)
            .cloned();
        let up = self
            .membership
            .peers(self.now())
            .iter()
            .any(|p| p.node == dest && p.state == hvcluster_common::membership::HostState::Up);
        let none = Vec::new();
        let dest_domains = self.remote_domains.get(&dest).unwrap_or(&none);
        let capacity = self.vm_ha.remote_capacity(dest);
        let destination = Destination {
            host: dest,
            name: &to,
            up,
            in_maintenance: self.in_maintenance(dest),
            capacity,
            domains: dest_domains,
        };
        let locks = self.migrations.all();
        let ratio = self.config.vm_ha.vcpu_ratio;
        let plan = migration::check(
            me,
            &name,
            domain.as_ref(),
            mode,
            &destination,
            &locks,
            ratio,
        )?;
        if dry_run {
            return Ok(format!(
                "would move {name} {mode} from {} to {to}; {to} would have {} MiB of memory \
                 left. Nothing was done (dry run)",
                self.member.own_name,
                plan.dest_free_after_kib / 1024
            ));
        }
        let reply = reply.take();
        let mut lock = plan.lock;
        lock.cluster = self
            .links
            .conns_of_domain(&lock.name, &lock.uuid)
            .first()
            .and_then(|c| self.links.guest(*c))
            .map(|g| g.cluster.clone());
        let m = &self.config.migration;
        let address = |host: NodeId| {
            let entry = self.config.host_by_id(host)?;
            let ic = m.network.as_deref().or(self
                .config
                .interconnects
                .first()
                .map(|i| i.name.as_str()))?;
            entry.addresses.get(ic).copied()
        };
        let dest_address = address(dest);
        let dest_uri = m.dest_uri.replace("{host}", &to).replace(
            "{address}",
            &dest_address.map(|a| a.to_string()).unwrap_or_default(),
        );
        // Per-host paths in the domain follow it: where `[host_link] channel_dir` names
        // the host (`/srv/vm/{host}/channels`), everything under the source's directory
        // (`/srv/vm/kvm1/`) is the destination's there.
        let own = self.member.own_name.clone();
        let rewrite = self
            .config
            .host_link
            .channel_dir
            .as_ref()
            .map(|d| d.to_string_lossy().to_string())
            .and_then(|d| {
                d.find("{host}")
                    .map(|at| d[..at + "{host}".len()].to_string())
            })
            .map(|prefix| {
                let under = |h: &str| format!("{}/", prefix.replace("{host}", h));
                vec![(under(&own), under(&to))]
            })
            .unwrap_or_default();
        if mode == MigrationMode::Export {
            self.migrations.next_id += 1;
            let id = self.migrations.next_id;
            self.begin_export(id, lock, (dest_uri, rewrite, start), reply);
            return Ok(String::new());
        }
        let job = Migration {
            name: lock.name.clone(),
            dest_uri,
            stream_uri: m
                .network
                .as_ref()
                .and(dest_address)
                .map(|a| format!("tcp://{a}")),
            mode: match mode {
                MigrationMode::Offline => hvcluster_libvirt::MigrationMode::Offline,
                _ => hvcluster_libvirt::MigrationMode::Live,
            },
            max_downtime_ms: Some(max_downtime_ms.unwrap_or(m.max_downtime_ms)),
            leave_paused,
            rewrite,
            timeout: Duration::from_secs(timeout_s.unwrap_or(m.timeout_s)),
        };
        self.migrations.next_id += 1;
        let id = self.migrations.next_id;
        let conns = self.links.conns_of_domain(&lock.name, &lock.uuid);
        if conns.is_empty() {
            self.begin_migration(id, lock, job, reply, Vec::new(), maintenance);
            return Ok(String::new());
        }
        // The guest cluster first: the guest may refuse (an application switching), and
        // once it accepts its cluster holds switchovers and forgives its pause.
        let hold_ms = job.timeout.as_millis() as u64 + 10_000;
        for &conn in &conns {
            if let Some(tx) = self.link_tx.get(&conn) {
                let _ = tx.try_send(LinkMessage::MigrationPrepare { id, hold_ms });
            }
        }
        self.migrations.preparing = Some(Preparing {
            id,
            lock,
            job,
            reply,
            waiting: conns.clone(),
            conns,
            deadline: Instant::now() + ASK_LIMIT,
            maintenance,
            hold_ms,
            agreed: 0,
        });
        Ok(String::new())
    }

    /// Keeps the host link's list of domains migrating here (with their guest cluster)
    /// as the other hosts' locks say.
    pub(super) fn note_incoming(&mut self) {
        let me = self.member.me;
        let now: std::collections::BTreeMap<String, String> = self
            .migrations
            .all()
            .into_iter()
            .filter(|l| l.to == me && !l.ended)
            .filter_map(|l| Some((l.name, l.cluster?)))
            .collect();
        let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        if *incoming != now {
            *incoming = now;
        }
    }

    /// A guest answered whether it may be moved.
    pub(super) fn on_migration_answer(&mut self, conn: u64, id: u64, ok: bool, detail: String) {
        let Some(p) = self.migrations.preparing.as_mut().filter(|p| p.id == id) else {
            return;
        };
        if !ok {
            let p = self.migrations.preparing.take().expect("checked above");
            return self.call_off(p, detail);
        }
        p.waiting.retain(|c| *c != conn);
        p.agreed += 1;
        if p.waiting.is_empty() {
            let p = self.migrations.preparing.take().expect("checked above");
            self.begin_migration(p.id, p.lock, p.job, p.reply, p.conns, p.maintenance);
        }
    }

    /// Gives up a migration whose guests did not answer in time.
    pub(super) fn migration_tick(&mut self) {
        if let Some(p) = self.migrations.preparing.as_mut() {
            // A guest whose link broke while it was asked (it registered again) is asked
            // on its new link; a closed link cannot answer.
            let mut open = self.links.conns_of_domain(&p.lock.name, &p.lock.uuid);
            open.retain(|c| !p.conns.contains(c));
            for conn in open {
                if let Some(tx) = self.link_tx.get(&conn) {
                    let ask = LinkMessage::MigrationPrepare {
                        id: p.id,
                        hold_ms: p.hold_ms,
                    };
                    let _ = tx.try_send(ask);
                    p.conns.push(conn);
                    p.waiting.push(conn);
                    p.deadline = p.deadline.max(Instant::now() + ASK_LIMIT);
                }
            }
            p.waiting.retain(|c| self.link_tx.contains_key(c));
            if p.waiting.is_empty() && p.agreed > 0 {
                let p = self.migrations.preparing.take().expect("checked above");
                self.begin_migration(p.id, p.lock, p.job, p.reply, p.conns, p.maintenance);
                return;
            }
        }
        if self
            .migrations
            .preparing
            .as_ref()
            .is_some_and(|p| Instant::now() >= p.deadline)
        {
            let p = self.migrations.preparing.take().expect("checked above");
            let why = format!(
                "the guest in {} did not answer within {} s whether it may be moved (is \
                 hv-guestd running in it?)",
                p.lock.name,
                ASK_LIMIT.as_secs()
            );
            self.call_off(p, why);
        }
    }

    /// A prepared migration does not happen: the guests are released, the operator told.
    fn call_off(&mut self, p: Preparing, why: String) {
        for conn in &p.conns {
            if let Some(tx) = self.link_tx.get(conn) {
                let _ = tx.try_send(LinkMessage::MigrationEnd { id: p.id });
            }
        }
        let name = p.lock.name.clone();
        let to = self.name(p.lock.to);
        self.member.events.record(
            Some(&name),
            "migration_refused",
            format!("{name} is not moved to {to}: {why}"),
            json!({ "domain": name, "to": to }),
        );
        let message = format!("{why}; nothing was done");
        if let Some(reply) = p.reply {
            let _ = reply.send(Response::Refused { message });
        }
        if p.maintenance {
            self.maintenance_moved(&name, Err(why));
        }
    }

    /// Journals the lock and asks libvirt to move the domain.
    fn begin_migration(
        &mut self,
        id: u64,
        lock: MigrationLock,
        job: Migration,
        reply: Option<oneshot::Sender<Response>>,
        conns: Vec<u64>,
        maintenance: bool,
    ) {
        if let Err(e) = self.migrations.save(Some(&lock)) {
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
            return self.call_off(p, e);
        }
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
        self.member.spawn(async move {
            let run = tokio::task::spawn_blocking(move || {
                libvirt.migrate(&job, Duration::from_secs(1), move |p| {
                    let _ = progress_tx.blocking_send(Input::MigrationProgress(p));
                })
            });
            let result = match run.await {
                Ok(r) => r,
                Err(e) => Err(format!("the migration task failed: {e}")),
            };
            let _ = tx.send(Input::Migrated(result)).await;
        });
    }

    /// Export/import of a stopped domain: its definition moves; no guest runs to ask.
    fn begin_export(
        &mut self,
        id: u64,
        lock: MigrationLock,
        (dest_uri, rewrite, start): (String, Vec<(String, String)>, bool),
        reply: Option<oneshot::Sender<Response>>,
    ) {
        if let Err(e) = self.migrations.save(Some(&lock)) {
            if let Some(reply) = reply {
                let _ = reply.send(Response::Refused {
                    message: format!("{e}: nothing was done"),
                });
            }
            return;
        }
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
            let run = tokio::task::spawn_blocking(move || {
                libvirt.export(&name, &dest_uri, &rewrite, start)
            });
            let result = match run.await {
                Ok(Ok(_)) => Ok(Migrated {
                    took_ms: began.elapsed().as_millis() as u64,
                    downtime_ms: None,
                }),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("the export task failed: {e}")),
            };
            let _ = tx.send(Input::Migrated(result)).await;
        });
    }

    /// libvirt's progress report of the running migration.
    pub(super) fn on_migration_progress(&mut self, p: Progress) {
        let Some(Running { lock, .. }) = &self.migrations.running else {
            return;
        };
        let mib = |b: u64| b / (1024 * 1024);
        let name = lock.name.clone();
        let message = if p.total_bytes == 0 {
            format!(
                "{name}: the destination is being prepared ({} ms so far)",
                p.elapsed_ms
            )
        } else {
            format!(
                "{name}: {} of {} MiB left to copy at {} MiB/s ({} ms so far{})",
                mib(p.remaining_bytes),
                mib(p.total_bytes),
                mib(p.rate_bps),
                p.elapsed_ms,
                p.expected_downtime_ms
                    .map(|ms| format!(", expected pause {ms} ms"))
                    .unwrap_or_default()
            )
        };
        self.member.events.record(
            Some(&name),
            "migration_progress",
            message,
            json!({ "domain": name, "remaining_bytes": p.remaining_bytes, "total_bytes": p.total_bytes, "rate_bps": p.rate_bps, "elapsed_ms": p.elapsed_ms, "expected_downtime_ms": p.expected_downtime_ms }),
        );
    }

    /// The running migration ended.
    pub(super) fn on_migrated(&mut self, result: Result<Migrated, String>) {
        let Some(Running {
            lock,
            reply,
            id,
            conns,
            start,
            maintenance,
        }) = self.migrations.running.take()
        else {
            return;
        };
        let (own, to) = (self.member.own_name.clone(), self.name(lock.to));
        let name = lock.name.clone();
        let response = match result {
            Ok(done) => {
                let pause = done
                    .downtime_ms
                    .map(|ms| format!(", paused {ms} ms"))
                    .unwrap_or_default();
                let message = if lock.mode == MigrationMode::Export {
                    format!(
                        "{name} exported from {own} and defined on {to} in {} ms{}",
                        done.took_ms,
                        if start {
                            ", and started there"
                        } else {
                            " (shut off)"
                        }
                    )
                } else {
                    format!(
                        "{name} moved {} from {own} to {to} in {} ms{pause}",
                        lock.mode, done.took_ms
                    )
                };
                self.member.events.record(
                    Some(&name),
                    "migration_done",
                    message.clone(),
                    json!({ "domain": name, "from": own, "to": to, "mode": lock.mode, "took_ms": done.took_ms, "downtime_ms": done.downtime_ms }),
                );
                Response::Done { message }
            }
            Err(why) => {
                // The guest stays here: its cluster may switch again.
                for conn in &conns {
                    if let Some(tx) = self.link_tx.get(conn) {
                        let _ = tx.try_send(LinkMessage::MigrationEnd { id });
                    }
                }
                let message = format!("{name} did not move to {to}: {why}");
                self.member.events.record(
                    Some(&name),
                    "migration_failed",
                    message.clone(),
                    json!({ "domain": name, "from": own, "to": to, "mode": lock.mode }),
                );
                Response::Error { message }
            }
        };
        if let Err(e) = self.migrations.save(None) {
            tracing::warn!("{e}");
        }
        let to_host = lock.to;
        self.migrations.finished.push((lock, Instant::now()));
        let outcome = match &response {
            Response::Done { .. } => Ok(to_host),
            Response::Error { message } | Response::Refused { message } => Err(message.clone()),
            _ => Err(String::new()),
        };
        if let Some(reply) = reply {
            let _ = reply.send(response);
        }
        if maintenance {
            self.maintenance_moved(&name, outcome);
        }
        self.send_heartbeats();
    }

    /// The first listing after a restart settles a migration the agent was running.
    pub(super) fn settle_interrupted_migration(&mut self) {
        let Some(lock) = self.migrations.interrupted.take() else {
            return;
        };
        let here = self.domains.iter().find(|d| d.uuid == lock.uuid).cloned();
        let name = lock.name.clone();
        let where_now = match &here {
            Some(d) => format!("it is {} here, on {}", d.state, self.member.own_name),
            None => format!(
                "it is not here any more: it runs on {} if the move completed",
                self.name(lock.to)
            ),
        };
        self.member.events.record(
            Some(&name),
            "migration_interrupted",
            format!(
                "{name}: this agent restarted during its {} migration to {}; {where_now}",
                lock.mode,
                self.name(lock.to)
            ),
            json!({ "domain": name, "to": self.name(lock.to) }),
        );
        if let (Some(d), Some(libvirt)) = (&here, self.libvirt.clone()) {
            if lock.mode == MigrationMode::Offline && d.state == "Paused" {
                // The offline migration paused it and never resumed it anywhere.
                let n = name.clone();
                self.member.spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || libvirt.resume(&n)).await;
                });
            }
        }
        if let Err(e) = self.migrations.save(None) {
            tracing::warn!("{e}");
        }
        self.migrations.finished.push((lock, Instant::now()));
    }
}
