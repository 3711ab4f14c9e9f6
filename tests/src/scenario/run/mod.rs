//! Running a scenario: perform the steps in order against a lab cluster, check every
//! expectation, and keep the figures benchmarks need.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hvcluster_common::admin::HostStatus;

mod expect;
mod fencing;
mod guests;
mod hypervisors;
mod keys;
mod logs;
mod operator;
mod rogue;
mod slowloris;

use super::spec::{ForgeKind, Scenario, Step};
use super::{forge, timeline};
use crate::cluster::{LabCluster, KDUMP_PORT};

/// Polls each observer's status (`fetch`) until `ok` holds for all, or the time limit;
/// returns what the disagreeing observers saw (`brief`).
pub(super) fn poll_observers<S>(
    observers: &[String],
    within: Duration,
    fetch: impl Fn(&str) -> anyhow::Result<S>,
    ok: impl Fn(&S) -> bool,
    brief: impl Fn(&S) -> String,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let mut failing = Vec::new();
        for o in observers {
            match fetch(o) {
                Ok(s) if ok(&s) => {}
                Ok(s) => failing.push(format!("{o}: {}", brief(&s))),
                Err(e) => failing.push(format!("{o}: no answer ({e:#})")),
            }
        }
        if failing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failing.join("; "));
        }
        std::thread::sleep(POLL);
    }
}

/// Polling period of the expectations.
const POLL: Duration = Duration::from_millis(25);

/// One checked expectation.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was expected, in words.
    pub text: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen when it did not.
    pub detail: String,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// Every expectation.
    pub checks: Vec<Check>,
    /// Measured phases, ms.
    pub measures: BTreeMap<String, f64>,
    /// The readable timeline.
    pub timeline: String,
    /// Every event the agents recorded during the run.
    pub events: Vec<hvcluster_common::admin::EventRecord>,
    /// When the last fault step started, µs since the epoch (the run's start if none).
    pub last_fault_us: u64,
}

impl Outcome {
    /// Whether every expectation held.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// How a run reports as it goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Print each step and check as it happens.
    pub verbose: bool,
}

pub(super) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Runner<'a> {
    cluster: &'a mut LabCluster,
    opts: RunOptions,
    start_us: u64,
    last_fault_us: u64,
    checks: Vec<Check>,
    measures: BTreeMap<String, f64>,
    steps: Vec<(u64, String)>,
    /// A `host-exec` running in the background.
    background: Option<hypervisors::Background>,
    /// A `link-flood` running.
    link_flood: Option<super::slowloris::Flood>,
    /// Floods under way (`udp-flood`).
    floods: Vec<super::flood::Flood>,
    /// Heartbeats made by the last `record-heartbeats` step.
    recording: Option<forge::Recording>,
}

/// Starts a lab cluster for `scenario`, runs it, and removes the lab.
pub fn run(scenario: &Scenario, opts: RunOptions) -> anyhow::Result<Outcome> {
    let mut cluster =
        LabCluster::start(&scenario.cluster).context("cannot start the lab cluster")?;
    let outcome = run_on(&mut cluster, scenario, opts);
    if !outcome.as_ref().is_ok_and(Outcome::ok) {
        logs::keep_logs(&cluster, &scenario.name);
    }
    drop(cluster);
    outcome
}

/// Runs `scenario` on an already started cluster.
pub fn run_on(
    cluster: &mut LabCluster,
    scenario: &Scenario,
    opts: RunOptions,
) -> anyhow::Result<Outcome> {
    let start_us = unix_us();
    let mut r = Runner {
        cluster,
        opts,
        start_us,
        last_fault_us: start_us,
        checks: Vec::new(),
        measures: BTreeMap::new(),
        steps: Vec::new(),
        background: None,
        link_flood: None,
        floods: Vec::new(),
        recording: None,
    };
    for step in &scenario.steps {
        r.step(step)
            .with_context(|| format!("scenario {}: step {step:?}", scenario.name))?;
    }
    for flood in std::mem::take(&mut r.floods) {
        let sent = flood.wait().context("udp-flood")?;
        r.note(format!("the flood ended after {sent} datagrams"));
    }
    let events = r.cluster.events.snapshot();
    let timeline = timeline::render(r.start_us, &r.steps, &events, &r.checks, &r.measures);
    Ok(Outcome {
        name: scenario.name.clone(),
        checks: r.checks,
        measures: r.measures,
        timeline,
        events,
        last_fault_us: r.last_fault_us,
    })
}

impl Runner<'_> {
    fn note(&mut self, text: String) {
        let now = unix_us();
        if self.opts.verbose {
            println!(
                "  +{:>7.3}s  [lab]  {text}",
                (now - self.start_us) as f64 / 1e6
            );
        }
        self.steps.push((now, text));
    }

    fn fault(&mut self, text: String) {
        self.last_fault_us = unix_us();
        self.note(text);
    }

    fn check(&mut self, text: String, ok: bool, detail: String) {
        if self.opts.verbose {
            let mark = if ok { "ok  " } else { "FAIL" };
            println!(
                "  {mark} {text}{}",
                if ok {
                    String::new()
                } else {
                    format!(" — {detail}")
                }
            );
        }
        self.checks.push(Check { text, ok, detail });
    }

    /// Polls until `f` is true for every observer, or the time limit; returns the last
    /// view of the observers that did not agree.
    fn wait_for(
        &self,
        observers: &[String],
        within: Duration,
        f: impl Fn(&HostStatus) -> bool,
    ) -> Result<(), String> {
        poll_observers(observers, within, |o| self.cluster.status(o), f, brief)
    }

    fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        let lab_addr = |c: &LabCluster, h: &str| c.address(h, 0);
        match step {
            Step::WaitAllUp { timeout_ms } => {
                self.cluster
                    .wait_all_up(Duration::from_millis(*timeout_ms))?;
                self.note("every host sees every other Up, quorum held".into());
            }
            Step::Sleep { ms } => std::thread::sleep(Duration::from_millis(*ms)),
            Step::PowerLoss { host } => {
                self.fault(format!("power loss on {host}"));
                self.cluster.lab.power_loss(host)?;
                self.cluster.reap_agent(host);
            }
            Step::Crash { host } => {
                self.fault(format!("{host} crashes into its kdump kernel"));
                self.cluster.lab.power_loss(host)?;
                self.cluster.reap_agent(host);
            }
            Step::PowerOn { host } => {
                self.note(format!("power on {host}"));
                self.cluster.lab.clear_faults(host)?;
                self.cluster.start_agent(host)?;
            }
            Step::Hang { host } => {
                self.fault(format!("{host} hangs (frozen)"));
                self.cluster.lab.hang(host)?;
            }
            Step::Thaw { host } => {
                self.fault(format!("{host} thawed"));
                self.cluster.lab.thaw(host)?;
            }
            Step::CutLink { host, interconnect } => {
                self.fault(format!("interconnect ic{interconnect} of {host} cut"));
                self.cluster.lab.cut_link(host, *interconnect)?;
            }
            Step::RestoreLink { host, interconnect } => {
                self.note(format!("interconnect ic{interconnect} of {host} restored"));
                self.cluster.lab.restore_link(host, *interconnect)?;
            }
            Step::Isolate { host } => {
                self.fault(format!("{host} isolated from every interconnect"));
                self.cluster.lab.isolate(host)?;
            }
            Step::Heal { host } => {
                self.fault(format!("{host} reconnected"));
                self.cluster.lab.heal(host)?;
            }
            Step::OneWayCut { from, to } => {
                self.fault(format!("packets from {from} no longer reach {to}"));
                self.cluster.lab.one_way_cut(from, to)?;
            }
            Step::Loss { host, percent } => {
                self.fault(format!("{percent}% packet loss on {host}"));
                self.cluster.lab.loss(host, *percent)?;
            }
            Step::ClearFaults { host } => {
                self.note(format!("network faults of {host} cleared"));
                self.cluster.lab.clear_faults(host)?;
            }
            Step::Load { hosts, seconds } => {
                self.fault(format!("stress-ng on {} for {seconds} s", hosts.join(", ")));
                for h in hosts {
                    self.cluster.lab.start_load(h, *seconds)?;
                }
            }
            Step::KdumpNotice { host } => {
                let targets: Vec<_> = self
                    .cluster
                    .hosts()
                    .iter()
                    .filter(|h| *h != host)
                    .map(|h| lab_addr(self.cluster, h))
                    .collect();
                self.fault(format!(
                    "{host} panics: its crash kernel sends a kdump notice"
                ));
                self.cluster.lab.kdump_notice(host, &targets, KDUMP_PORT)?;
            }
            Step::KdumpNoticeRogue {} => {
                let targets: Vec<_> = self
                    .cluster
                    .hosts()
                    .iter()
                    .map(|h| lab_addr(self.cluster, h))
                    .collect();
                self.fault("a kdump notice arrives from an address of no host".into());
                self.cluster
                    .lab
                    .kdump_notice_from_rogue(&targets, KDUMP_PORT)?;
            }
            Step::RecordHeartbeats { host } => {
                self.recording = Some(forge::record(self.cluster, host)?);
                self.note(format!("{host}'s heartbeats recorded"));
            }
            Step::Forge {
                to,
                kind: ForgeKind::Recorded,
                count,
            } => {
                let recording = self
                    .recording
                    .clone()
                    .context("kind = \"recorded\" needs a record-heartbeats step before it")?;
                self.fault(format!(
                    "{count} recorded heartbeats of {} replayed to {to}, one every 100 ms",
                    recording.host
                ));
                forge::replay(self.cluster, to, &recording, *count)?;
            }
            Step::Forge { to, kind, count } => {
                self.fault(format!("{count} forged frames ({kind:?}) sent to {to}"));
                forge::send(self.cluster, to, *kind, *count)?;
            }
            Step::RestartAgent { host } => {
                self.fault(format!("hv-hostd restarted on {host}"));
                self.cluster.stop_agent(host)?;
                self.cluster.start_agent(host)?;
            }
            Step::ExpectState { .. }
            | Step::ExpectStays { .. }
            | Step::ExpectLink { .. }
            | Step::ExpectQuorum { .. }
            | Step::ExpectCounter { .. }
            | Step::ExpectEvent { .. }
            | Step::ExpectNoEvent { .. } => self.expect_host(step),
            Step::ExpectDown {
                observers,
                host,
                proof,
                within_ms,
                measure,
            } => self.expect_down(observers, host, proof, within_ms, measure),
            Step::TimeFenceAgent {
                from,
                target,
                measure,
            } => self.time_fence_agent(from, target, measure)?,
            Step::ExpectPower { host, on } => self.expect_power(host, on),
            Step::StopAgent { host } => {
                self.fault(format!("hv-hostd on {host} stopped with SIGTERM"));
                self.cluster.stop_agent(host)?;
            }
            Step::KillAgent { host } => {
                self.fault(format!("hv-hostd on {host} killed with SIGKILL"));
                self.cluster.kill_agent(host)?;
            }
            Step::StartAgent { host } => {
                self.note(format!("hv-hostd on {host} started"));
                self.cluster.start_agent(host)?;
            }
            Step::Hvctl {
                on,
                args,
                exit,
                within_ms,
                output,
            } => self.hvctl(on, args, *exit, *within_ms, output.as_deref())?,
            Step::GuestCrash { guest } => {
                self.fault(format!("guest {guest} crashes"));
                self.cluster.crash_guest(guest)?;
            }
            Step::Pressure { host, percent } => {
                self.note(format!("CPU pressure of {host} set to {percent}%"));
                self.cluster.set_pressure(host, *percent)?;
            }
            Step::GuestHang { guest } => {
                self.fault(format!("guest {guest} hangs (frozen)"));
                self.cluster.lab.hang_guest(guest)?;
            }
            Step::StrangerKillRequest { via, target } => {
                self.note(format!(
                    "a guest of another guest cluster, on {via}'s network, asks to kill {target}"
                ));
                let node_id: u32 = target.trim_start_matches('g').parse()?;
                let (ok, detail) = self.cluster.stranger_kill_request(via, node_id)?;
                self.check(
                    format!("the kill request for {target} is refused"),
                    !ok,
                    format!("the host agreed: {detail}"),
                );
                self.note(format!("answer: {detail}"));
            }
            Step::GuestStart { guest } => {
                self.note(format!("guest {guest} boots"));
                self.cluster.start_guest(guest)?;
            }
            Step::FailResource { guest, command } => {
                self.fault(format!("on {guest}: {command}"));
                let (code, out) = self.cluster.guest_exec(guest, command)?;
                if code != 0 {
                    anyhow::bail!("`{command}` on {guest} exited {code}: {out}");
                }
            }
            Step::HostExec {
                host,
                command,
                exit,
                output,
                within_ms,
                while_app,
                background,
            } => self.host_exec(
                host,
                command,
                (*exit, output.as_deref()),
                Duration::from_millis(*within_ms),
                while_app.as_ref(),
                *background,
            )?,
            Step::UdpFlood { ms, per_second } => {
                self.fault(format!(
                    "flood at every heartbeat port from the rogue namespace ({per_second}/s for {ms} ms)"
                ));
                let flood = super::flood::start(self.cluster, *ms, *per_second)?;
                self.floods.push(flood);
            }
            Step::KdumpNoticeSpoofed { host } => {
                self.fault(format!(
                    "a forged kdump notice with {host}'s address arrives from the rogue namespace"
                ));
                let from = std::net::SocketAddr::new(lab_addr(self.cluster, host), KDUMP_PORT);
                for h in self.cluster.hosts().iter().filter(|h| *h != host) {
                    let to = std::net::SocketAddr::new(lab_addr(self.cluster, h), KDUMP_PORT);
                    let notice = hvcluster_common::kdump::notice_bytes().to_vec();
                    super::flood::send_spoofed(self.cluster, from, to, vec![notice])?;
                }
            }
            Step::AwaitBackground { within_ms } => {
                self.await_background(Duration::from_millis(*within_ms))?
            }
            Step::GuestExec {
                guest,
                command,
                exit,
            } => {
                let (code, out) = self.cluster.guest_exec(guest, command)?;
                self.check(
                    format!("on {guest}, `{command}` exits {exit}"),
                    code == *exit,
                    format!("exit {code}: {out}"),
                );
            }
            Step::ExpectApp {
                observers,
                app,
                online_on,
                node,
                state,
                maintenance,
                within_ms,
                measure,
            } => self.expect_app(
                observers,
                app,
                &guests::AppView {
                    online_on: online_on.clone(),
                    node: node.clone(),
                    state: *state,
                    maintenance: *maintenance,
                },
                Duration::from_millis(*within_ms),
                measure.as_deref(),
            ),
            Step::ExpectAppStays {
                observers,
                app,
                online_on,
                for_ms,
            } => self.expect_app_stays(observers, app, online_on, Duration::from_millis(*for_ms)),
            Step::ExpectNode {
                observers,
                node,
                state,
                within_ms,
            } => self.expect_node(observers, node, *state, Duration::from_millis(*within_ms)),
            Step::LinkFlood {
                via,
                connections,
                byte_every_ms,
                for_ms,
            } => self.link_flood(via, *connections, *byte_every_ms, *for_ms)?,
            Step::AwaitLinkFlood {
                min_refused,
                max_held,
                within_ms,
            } => self.await_link_flood(*min_refused, *max_held, *within_ms)?,
            Step::ForeignClaim {
                via,
                node,
                node_id,
                domain,
                own_cluster,
                then_kill,
            } => {
                let claim = crate::rogue::Claim {
                    stranger: !own_cluster,
                    node: node.clone(),
                    node_id: *node_id,
                    domain: domain.clone(),
                };
                self.foreign_claim(via, &claim, *then_kill)?
            }
            Step::KillFlood {
                via,
                target,
                for_ms,
            } => self.kill_flood(via, target, Duration::from_millis(*for_ms))?,
            Step::ExpectEventCount {
                observers,
                kind,
                at_most,
            } => self.expect_event_count(observers, kind, *at_most),
            Step::ExpectAlive { hosts } => {
                for h in hosts {
                    let running = self.cluster.agent_running(h);
                    let answers = self.cluster.status(h).is_ok();
                    self.check(
                        format!("hv-hostd on {h} is running and answers"),
                        running && answers,
                        format!("running {running}, answers {answers}"),
                    );
                }
            }
            Step::ChmodKey { file, mode } => {
                self.fault(format!("key file {file} set to mode {mode:04o}"));
                self.cluster.chmod_key(file, *mode)?;
            }
            Step::StartRefused {
                agent,
                output,
                within_ms,
            } => self.start_refused(agent, output, Duration::from_millis(*within_ms)),
        }
        Ok(())
    }

    /// Applies `f` to the gathered events until it finds what it looks for; events
    /// reach the followers a moment after the status shows their effect.
    fn search_events<T>(
        &self,
        f: impl Fn(&[hvcluster_common::admin::EventRecord]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = f(&self.cluster.events.snapshot());
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(POLL);
        }
    }
}

fn brief(s: &HostStatus) -> String {
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .filter(|h| !h.local)
        .map(|h| format!("{}={}", h.name, hvctl::render::state(h.state)))
        .collect();
    format!("{} quorum={}", hosts.join(" "), s.quorum.quorate)
}
