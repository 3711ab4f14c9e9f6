//! The agent's driver loop: owns the host core ([`HostCore`]), turns what arrives into
//! its events and performs the effects it returns ([`perform`]). What the core does not
//! decide yet (VM HA, domains and double runs, maintenance, migration, host-side
//! applications) is still decided here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::config::{ClusterConfig, LoadedConfig, NodeId};
use hvcluster_common::host::{Event, HostCore};
use hvcluster_common::host_heartbeat::HostSections;
use hvcluster_common::membership::{Heartbeat, MembershipEvent};
use serde_json::json;

mod apps;
mod budget;
mod destroy;
mod domains;
mod guests;
mod input;
mod journaled;
mod leave;
mod maintenance;
mod migrate;
mod panic;
mod perform;
mod saves;
mod sections;
mod status;
mod vmha;

use domains::poll_domains;
use guests::start_host_link;
pub use input::Input;

use crate::admin::{self, AdminCall};
use crate::fence::FenceDriver;
use crate::member::Member;
use crate::net::{self, Received, Roster};
use crate::process::Prepared;
use crate::{incarnation, operator, watchdog};

/// A running host agent.
pub struct Agent {
    config: ClusterConfig,
    member: Member<Input, Heartbeat>,
    /// Every decision of the failover path: membership, fencing, panic notices,
    /// host-down notices, guest kills.
    core: HostCore,
    fence: FenceDriver,
    prepared: Prepared,
    /// This host's hypervisor, when `[hypervisor] uri` is given.
    libvirt: Option<crate::hv_call::Hv>,
    /// Domains that may run here, as the hypervisor last listed them.
    domains: Vec<hvcluster_common::hostlink::DomainPresence>,
    /// Domains the other hosts reported last.
    remote_domains:
        std::collections::BTreeMap<NodeId, Vec<hvcluster_common::hostlink::DomainPresence>>,
    /// Why the hypervisor cannot be asked, while it cannot.
    hypervisor_problem: Option<String>,
    /// Domains seen running on several hosts (UUID and hosts), reported once.
    double_runs: hvcluster_common::host::domains::DoubleRuns,
    /// The hypervisor listed its domains at least once since this agent started.
    domains_listed: bool,
    /// VM HA: lost domains, assignments, failed starts.
    vm_ha: vmha::VmHa,
    link_tx: HashMap<u64, tokio::sync::mpsc::Sender<hvcluster_common::hostlink::LinkMessage>>,
    /// Host-side applications.
    host_apps: apps::HostApps,
    /// Migrations: this host's, and those the others run.
    migrations: migrate::Migrations,
    /// Host maintenance: this host's, and which others are in it.
    maintenance: maintenance::Maintenance,
    /// The writer of the migration lock and the maintenance state.
    saves: saves::Saves,
    /// Domains migrating here, for the host link's greeting on their channel.
    incoming: crate::link::IncomingGuests,
    /// `hvctl host leave` asked this agent to leave and exit.
    leave_requested: bool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("host", &self.member.own_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Binds every socket and starts the receiving tasks, the watchdog and the admin
    /// server. Fails with a clear message when a socket cannot be bound.
    pub async fn start(
        loaded: LoadedConfig,
        host: &str,
        prepared: Prepared,
    ) -> anyhow::Result<Agent> {
        let LoadedConfig {
            config,
            key,
            digest,
        } = loaded;
        let hosts = config
            .hosts
            .iter()
            .map(|h| (h.node_id, h.name.as_str(), &h.addresses));
        let signing = hvcluster_common::hostseal::HostSigningKey::derive(&key);
        let roster = Roster::new(key, config.cluster_id(), host, &config.interconnects, hosts)?;
        let mut member = Member::start(roster, "heartbeat")?;
        let me = member.me;
        if config.kdump.enabled {
            let addr = SocketAddr::new(config.kdump.listen, config.kdump.port);
            let socket = net::bind_udp(addr, "kdump notice")?;
            let sources = config.hosts.iter().flat_map(net::host_addresses).collect();
            let (counters, events) = (member.counters.clone(), member.events.clone());
            let listener =
                crate::kdump::listen(socket, sources, counters, events, member.tx.clone());
            member.spawn(listener);
        }
        let dispatch = admin::HostDispatch(member.tx.clone());
        member.serve_admin(&config.admin.socket, &config.cluster.state_dir, dispatch)?;
        watchdog::spawn((&config.load_watchdog).into(), member.tx.clone())
            .context("cannot start the load watchdog")?;

        let (incarnation, incarnation_problem) =
            incarnation::next_checked(&config.cluster.state_dir);
        let incoming = crate::link::IncomingGuests::default();
        start_host_link(
            &config,
            &mut member,
            host,
            incarnation,
            incoming.clone(),
            signing,
        )?;
        let libvirt = config.hypervisor.uri.as_ref().map(|u| {
            let hv: crate::hv_call::Hv =
                std::sync::Arc::new(crate::hypervisor::Libvirt::new(&u.replace("{host}", host)));
            hv
        });
        if let Some(libvirt) = &libvirt {
            member.spawn(poll_domains(libvirt.clone(), member.tx.clone()));
        }
        let (mut fence, restored) =
            FenceDriver::open(&config, member.tx.clone()).with_context(|| {
                format!(
                    "cannot open the fencing journal in {}",
                    config.cluster.state_dir.display()
                )
            })?;
        // Order ids start at random, so an agent restarted within the time answers are
        // kept cannot have a new order settled by an answer to an old one of the same id.
        let first_order = rand::random::<u64>() >> 16;
        let mut core = HostCore::new(
            &config,
            me,
            (digest, incarnation),
            member.now(),
            first_order,
        );
        let downs = restored.clone();
        let _ = core.step(member.now(), Event::StateLoaded { downs });
        let host_apps = apps::HostApps::open(&config, &member, host);
        let saves = saves::Saves::spawn(member.tx.clone());
        let config_state_dir = config.cluster.state_dir.clone();
        let (migrations, migration_problem) = migrate::Migrations::open(&config.cluster.state_dir);
        let (maintenance, maintenance_problem) = maintenance::Maintenance::open(&config_state_dir);
        let events = &member.events;
        let problems = [
            ("fence_journal_set_aside", fence.take_opened_problem()),
            ("incarnation_unreadable", incarnation_problem),
            ("maintenance_state_unreadable", maintenance_problem),
            ("migration_journal_unreadable", migration_problem),
        ];
        journaled::report_state_problems(events, host, problems);
        events.record(
            Some(host),
            "started",
            format!(
                "agent started (incarnation {incarnation}, realtime {}, memory locked {})",
                prepared.realtime, prepared.memory_locked
            ),
            json!({ "incarnation": incarnation, "realtime": prepared.realtime, "memory_locked": prepared.memory_locked }),
        );
        for r in &restored {
            let n = config
                .host_by_id(r.target)
                .map(|h| h.name.clone())
                .unwrap_or_default();
            events.record(
                Some(&n),
                "host_down_restored",
                format!("{n}: DOWN (restored from the fencing journal)"),
                serde_json::to_value(r).unwrap_or_default(),
            );
        }
        Ok(Agent {
            config,
            member,
            core,
            fence,
            prepared,
            libvirt,
            domains: Vec::new(),
            remote_domains: std::collections::BTreeMap::new(),
            hypervisor_problem: None,
            double_runs: Default::default(),
            domains_listed: false,
            vm_ha: vmha::VmHa::default(),
            link_tx: HashMap::new(),
            host_apps,
            migrations,
            maintenance,
            saves,
            incoming,
            leave_requested: false,
        })
    }

    /// Runs until `shutdown` completes, then stops every task and removes the socket.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(self.config.heartbeat.interval_ms);
        let period = (interval / 8).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut leaving: Option<Instant> = None;
        loop {
            // Heartbeats first, then the failure detector's tick, then everything else:
            // no amount of other input delays detection.
            let (frames, inputs) = self.member.queues();
            tokio::select! {
                biased;
                _ = &mut shutdown, if leaving.is_none() => {
                    leaving = Some(Instant::now());
                    self.start_leaving();
                }
                Some(frame) = frames.recv() => self.on_frame(frame),
                _ = ticker.tick() => {
                    if self.leave_requested && leaving.is_none() {
                        leaving = Some(Instant::now());
                        self.start_leaving();
                    }
                    if leaving.is_some_and(|since| {
                        self.apps_stopped() || since.elapsed() > crate::apps::Apps::SHUTDOWN_LIMIT
                    }) {
                        break;
                    }
                    let effects = self.core.tick(self.now());
                    self.perform(effects);
                    self.apps_tick();
                    self.saves_tick();
                    self.migration_tick();
                    self.maintenance_tick();
                    self.member.service_tick(self.core.membership(), "host");
                }
                Some(input) = inputs.recv() => self.on_input(input),
            }
        }
        self.say_leave().await;
        let member = &mut self.member;
        member.events.record(
            Some(&member.own_name),
            "stopped",
            "agent stopping".into(),
            json!({}),
        );
        member.stop();
        Ok(())
    }

    fn now(&self) -> Duration {
        self.member.now()
    }

    fn name(&self, id: NodeId) -> String {
        self.member.name(id)
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Kdump { at, from, bytes } => {
                let now = self.member.clock_at(at);
                self.step_at(now, Event::Kdump { from, bytes });
            }
            Input::Watchdog(verdict) => self.step(Event::Watchdog(verdict)),
            Input::Admin(AdminCall::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            Input::Admin(AdminCall::Operator {
                request: hvcluster_common::admin::Request::VmStart { name },
                reply,
            }) => self.vm_start(name, reply),
            Input::Admin(AdminCall::Operator {
                request:
                    request @ (hvcluster_common::admin::Request::VmStop { .. }
                    | hvcluster_common::admin::Request::VmSuspend { .. }
                    | hvcluster_common::admin::Request::VmResume { .. }),
                reply,
            }) => self.vm_operation(request, reply),
            Input::Admin(AdminCall::Operator { request, reply }) if request.is_guest_command() => {
                let _ = reply.send(self.app_command(request));
            }
            Input::Admin(AdminCall::Operator {
                request: request @ hvcluster_common::admin::Request::VmMigrate { .. },
                reply,
            }) => self.vm_migrate(request, reply),
            Input::Admin(AdminCall::Operator {
                request: hvcluster_common::admin::Request::HostLeave { host },
                reply,
            }) => self.leave_command(&host, reply),
            Input::Admin(AdminCall::Operator {
                request: hvcluster_common::admin::Request::HostMaintenance { host, on },
                reply,
            }) => {
                self.host_maintenance(&host, on, reply);
            }
            Input::MigrationProgress(p) => self.on_migration_progress(p),
            Input::Migrated(result) => self.on_migrated(result),
            Input::AppOpDone { id, outcome } => {
                use hvcluster_common::host::apps::ResultRoute;
                match self.host_apps.results.ended(id) {
                    ResultRoute::ListFirst => self.relist_then_report(id, outcome),
                    ResultRoute::ReportNow => self.app_result(id, outcome, None),
                }
            }
            Input::AppOpListed {
                id,
                outcome,
                listed,
            } => self.app_result(id, outcome, listed),
            Input::Admin(AdminCall::Operator { request, reply }) => {
                let now = self.now();
                let (membership, fence) = self.core.operator_parts();
                let cx = operator::Ctx {
                    now,
                    config: &self.config,
                    me: self.member.me,
                    membership,
                    fence,
                    journal: self.fence.journal_path(),
                    events: &self.member.events,
                };
                let (effects, answer) = operator::handle(cx, request, reply);
                self.perform(effects);
                answer.send();
            }
            Input::Link(input) => self.on_link(input),
            Input::Domains(listed) => self.on_domains(listed),
            Input::HaStarted { uuid, name, result } => self.vm_ha_started(uuid, name, result),
            Input::Destroyed {
                from,
                id,
                ok,
                detail,
                not_running,
            } => self.on_destroyed(from, id, ok, detail, not_running),
            Input::FenceResult {
                target,
                level,
                ok,
                detail,
            } => self.step(Event::FenceLevelDone {
                target,
                level,
                ok,
                detail,
            }),
            Input::Journaled { down, result } => self.step(Event::Journaled { down, result }),
            Input::StateSaved => self.on_saved(),
        }
    }

    fn on_frame(&mut self, frame: Received<Heartbeat>) {
        let hb = frame.heartbeat;
        let now = self.member.clock_at(frame.at);
        let fresh = self.core.membership().is_fresh(&hb.payload);
        let sender = (hb.sender, hb.incarnation);
        let (s, issues) = HostSections::read(&hb.payload);
        self.report_sections(hb.sender, issues);
        let effects = self.core.heard(now, sender, hb.accepted, (&hb.payload, &s));
        self.perform(effects);
        if !fresh {
            return;
        }
        // What the core does not decide yet.
        if self.remote_domains.get(&hb.sender) != Some(&s.domains) {
            self.remote_domains.insert(hb.sender, s.domains.clone());
            self.check_double_runs();
        }
        self.vm_ha_heard(hb.sender, &s);
        self.apps_heard(now, hb.sender, hb.incarnation, &s.gossip);
        if self.migrations.heard(hb.sender, &s.migrations) {
            self.note_incoming();
        }
        self.maintenance
            .heard(hb.sender, s.maintenance, &s.failback);
    }

    /// Hands `event` to the core now and performs what it returns.
    fn step(&mut self, event: Event) {
        self.step_at(self.now(), event);
    }

    /// Hands `event` to the core at `now` and performs what it returns.
    fn step_at(&mut self, now: Duration, event: Event) {
        let effects = self.core.step(now, event);
        self.perform(effects);
    }

    fn send_heartbeats(&mut self) {
        for ic in 0..self.member.outbox.interconnects() {
            let now = self.now();
            let (hypervisor, domains) = (self.libvirt.is_some(), &self.domains);
            let (mut hb, mut s) = self.core.heartbeat(now, ic, |d| {
                !hypervisor || domains.iter().any(|x| x.name == d || x.uuid == d)
            });
            s.domains = self.domains.clone();
            s.capacity = self.vm_ha.capacity;
            (s.ha_plan, s.ha_failed, s.ha_lost) = self.vm_ha.published();
            if !self.host_apps.apps.is_empty() {
                s.gossip = self.host_apps.apps.engine.gossip();
            }
            s.migrations = self.migrations.published();
            s.maintenance = self.maintenance.on();
            s.failback = self.maintenance.failback();
            self.fit_heartbeat(&mut hb, &mut s);
            let report = self
                .member
                .outbox
                .send(ic, self.core.membership().incarnation(), &hb);
            self.check_sent(&report);
            self.member.counters.add("heartbeats_sent", report.sent);
            for failure in report.failed {
                let name = format!("send_errors_{}", self.config.interconnects[ic].name);
                if self
                    .member
                    .counters
                    .bump_logged(&name, Instant::now())
                    .is_some()
                {
                    tracing::warn!(to = %failure.to, peer = %self.name(failure.peer), cause = %failure.cause, "cannot send heartbeat");
                }
            }
        }
    }

    fn report_fence(&mut self, e: &hvcluster_common::fencing::FenceEvent) {
        let (subject, kind, message) = crate::fence::describe(e, |n| self.name(n));
        self.member.events.record(
            Some(&subject),
            kind,
            message,
            serde_json::to_value(e).unwrap_or_default(),
        );
    }

    fn report(&mut self, e: MembershipEvent) {
        let detail = serde_json::to_value(&e).unwrap_or_default();
        let (subject, kind, message) = crate::describe::membership_event(
            &e,
            |n| self.name(n),
            |i| {
                self.config
                    .interconnects
                    .get(i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default()
            },
            &self.member.own_name,
        );
        self.member
            .events
            .record(subject.as_deref(), kind, message, detail);
    }
}
