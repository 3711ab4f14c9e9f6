//! `hvctl vm migrate`: moving a domain of this host to another host, cluster-aware.
//!
//! The request is checked by the pure core ([`hvcluster_common::migration::check`]):
//! the domain runs here, the destination is Up, has reported its capacity and has room.
//! The migration lock is then journaled (`<state_dir>/migration.json`, by the state
//! writer thread: the migration begins once the lock is on disk, and is called off when
//! it is not within 10 s) before libvirt is asked, and carried in this host's heartbeats while the migration runs and for a few
//! seconds after (until both hosts have listed their domains again), so that no host
//! takes the domain's two instances for a double run. A restart of this agent midway
//! finds the lock: once the hypervisor has listed its domains, the agent says where the
//! domain is (here, resumed if an offline migration had paused it, or at the
//! destination) and drops the lock; nothing is repeated.

use std::time::{Duration, Instant};

use hvcluster_common::admin::{Request, Response};
use hvcluster_common::config::NodeId;
use hvcluster_common::hostlink::LinkMessage;
use hvcluster_common::migration::{
    self, paused_at_source, Destination, DestinationFacts, MigrationMode, PausedAtSource,
};
use hvcluster_libvirt::{Migrated, Migration, Progress};
use serde_json::json;
use tokio::sync::oneshot;

mod begin;
mod consent;
mod state;

pub(super) use state::{Migrations, Move};
use state::{Preparing, Running, ASK_LIMIT};

use super::Agent;

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
        if let Some(l) = self.migrations.current() {
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
            .core
            .membership()
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
            .core
            .links()
            .conns_of_domain(&lock.name, &lock.uuid)
            .first()
            .and_then(|c| self.core.links().guest(*c))
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
        let conns = self.core.links().conns_of_domain(&lock.name, &lock.uuid);
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
        self.saves.remove(&self.migrations.journal);
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

    /// What the destination of an interrupted migration says, as this host knows it.
    fn destination_facts(&self, to: NodeId) -> DestinationFacts<'_> {
        if self.core.fencing().machine().down(to).is_some() {
            return DestinationFacts::Down;
        }
        let present = self
            .core
            .membership()
            .peers(self.now())
            .iter()
            .any(|p| p.node == to && p.state.present());
        match self.remote_domains.get(&to) {
            Some(listed) if present => DestinationFacts::Lists(listed),
            _ => DestinationFacts::Unknown,
        }
    }

    /// A listing after a restart settles a migration the agent was running. A domain an
    /// offline migration left paused here is resumed only once the destination is known
    /// not to run it (its heartbeats' domain list, or its DOWN).
    pub(super) fn settle_interrupted_migration(&mut self) {
        let Some(lock) = self.migrations.interrupted.clone() else {
            return;
        };
        let here = self.domains.iter().find(|d| d.uuid == lock.uuid).cloned();
        let name = lock.name.clone();
        let paused_offline = lock.mode == MigrationMode::Offline
            && here.as_ref().is_some_and(|d| d.state == "Paused");
        let decision =
            paused_offline.then(|| paused_at_source(&lock.uuid, self.destination_facts(lock.to)));
        if decision == Some(PausedAtSource::Wait) {
            if !self.migrations.interrupted_noted {
                self.migrations.interrupted_noted = true;
                let to = self.name(lock.to);
                self.member.events.record(
                    Some(&name),
                    "migration_resume_waits",
                    format!(
                        "{name}: this agent restarted during its offline migration to {to} and \
                         finds it paused here; it is resumed only once {to} is heard not \
                         running it (or is fenced)"
                    ),
                    json!({ "domain": name, "to": to }),
                );
            }
            return;
        }
        self.migrations.interrupted = None;
        let where_now = match (&here, decision) {
            (Some(_), Some(PausedAtSource::LeavePaused)) => format!(
                "{} runs it, so the paused copy here on {} stays paused and is not resumed: \
                 check it and remove it here (virsh destroy, then undefine)",
                self.name(lock.to),
                self.member.own_name
            ),
            (Some(d), _) => format!("it is {} here, on {}", d.state, self.member.own_name),
            (None, _) => format!(
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
        if let (Some(PausedAtSource::Resume), Some(libvirt)) = (decision, self.libvirt.clone()) {
            // The offline migration paused it and the destination does not run it.
            let n = name.clone();
            self.member.spawn(async move {
                let limit = Duration::from_secs(60);
                if let Err(e) = crate::hv_call::call(&libvirt, limit, move |hv| hv.resume(&n)).await {
                    tracing::error!(cause = %e, "cannot resume the domain an interrupted migration left paused");
                }
            });
        }
        self.saves.remove(&self.migrations.journal);
        self.migrations.finished.push((lock, Instant::now()));
    }
}
