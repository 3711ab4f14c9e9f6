//! The whole-system world: N hosts (agents, each the real host core through
//! [`HostAgent`]; machines, BMCs, journals, network) and one guest cluster whose nodes
//! are domains placed on them. The world performs what the cores ask (send heartbeats,
//! run fence levels, write the journal) and reports back how it went.
//! Every safety rule is checked where the thing it forbids would happen; the first
//! broken one is kept in [`SystemWorld::failure`].

use std::collections::BTreeMap;
use std::time::Duration;

use hvcluster_common::config::{ClusterConfig, NodeId};
use hvcluster_common::fencing::{DownRecord, FenceEvent};
use hvcluster_common::host::{Effect, Effects, Event};
use hvcluster_common::kdump;

use super::guest_links::GuestLink;
use super::host_agent::{
    cluster_config, guest_names, kdump_source, HostAgent, HostSettings, DEAD_AFTER,
};
use super::hosts::{Device, FenceFlight, Host, HostFrame, HostNet};
use crate::guests::world::{Power, World as GuestWorld, TICK};
use crate::rng::Rng;

/// How long a hanging fence device takes to fail.
const DEVICE_HANG: Duration = Duration::from_millis(5000);

/// Host index `i` has node id `i + 1`.
mod proof;

pub fn hid(i: usize) -> NodeId {
    i as NodeId + 1
}

/// The world.
#[derive(Debug)]
pub struct SystemWorld {
    /// World time (the guest world's clock moves with it).
    pub now: Duration,
    /// What every host agent shares.
    pub settings: HostSettings,
    /// The cluster configuration every host agent runs.
    pub config: ClusterConfig,
    /// The hosts.
    pub hosts: Vec<Host>,
    /// Incarnation each host booted under.
    pub boot_incarnation: Vec<u64>,
    /// The hosts' network faults.
    pub net: HostNet,
    frames: Vec<HostFrame>,
    flights: Vec<FenceFlight>,
    /// Kdump notices on their way: (when, to, about).
    notices: Vec<(Duration, usize, usize)>,
    /// The guest cluster.
    pub guests: GuestWorld,
    /// Host each guest node's domain is placed on.
    pub domain_host: Vec<usize>,
    /// Guest nodes whose domain died with its host: (host, the host's boot incarnation).
    pub lost: Vec<Option<(usize, u64)>>,
    ticks: u64,
    /// Randomness of the hosts' side (network, device timings).
    pub rng: Rng,
    /// The first safety rule broken.
    pub failure: Option<String>,
    /// The last operator request an agent refused, and why.
    pub last_refusal: Option<String>,
    /// DOWN records (target, incarnation, by) already judged, with the life of the
    /// target they were made in.
    pub record_life: BTreeMap<(NodeId, u64, NodeId), u64>,
    /// Per host: whose fence powered it off, since it last booted.
    pub fenced_by: Vec<Option<usize>>,
    /// Per guest node: its host link, if linked.
    pub(super) links: Vec<Option<GuestLink>>,
    /// The last host link connection id given.
    pub(super) next_conn: u64,
    /// Clean leaves in force ([`super::leave`]).
    pub leaves: super::leave::Leaves,
}

impl SystemWorld {
    /// A world of `settings.hosts` hosts around `guests`, node `g` placed on host
    /// `g % hosts`.
    pub fn new(settings: HostSettings, guests: GuestWorld, rng: Rng) -> SystemWorld {
        let n = settings.hosts;
        let g = guests.nodes.len();
        let mut w = SystemWorld {
            now: guests.now,
            config: cluster_config(&settings),
            settings,
            hosts: (0..n).map(|_| Host::new()).collect(),
            boot_incarnation: vec![0; n],
            net: HostNet::default(),
            frames: Vec::new(),
            flights: Vec::new(),
            notices: Vec::new(),
            domain_host: (0..g).map(|i| i % n).collect(),
            lost: vec![None; g],
            guests,
            ticks: 0,
            rng,
            failure: None,
            record_life: BTreeMap::new(),
            last_refusal: None,
            fenced_by: vec![None; n],
            links: vec![None; g],
            next_conn: 0,
            leaves: super::leave::Leaves::new(n),
        };
        for h in 0..n {
            w.start_agent(h);
        }
        w
    }

    /// Prints `what` when the guest world is verbose.
    pub fn log(&self, what: impl FnOnce() -> String) {
        self.guests.log(what);
    }

    pub(super) fn fail(&mut self, why: String) {
        self.log(|| format!("BROKEN: {why}"));
        if self.failure.is_none() {
            self.failure = Some(format!("{why} (at {:.2}s)", self.now.as_secs_f64()));
        }
    }

    // ----- host lives -----

    /// Starts host `h`'s agent: a new incarnation, the journal reloaded.
    pub fn start_agent(&mut self, h: usize) {
        let now = self.now;
        self.leaves.ended(h);
        let host = &mut self.hosts[h];
        host.disk.incarnation += 1;
        host.generation += 1;
        host.agent_back_at = None;
        host.sequences.clear();
        host.windows.clear();
        let records = host.disk.load();
        // Kill orders of each agent start are numbered apart from any earlier one's.
        let first_order = host.generation << 32;
        let flawed = self.settings.fence_without_quorum;
        let ids = (host.disk.incarnation, first_order);
        let agent = HostAgent::start(hid(h), &self.config, flawed, ids, now, &records);
        // Nothing journaled is lost: every record whose write was reported done is
        // DOWN again after the reload.
        let missing: Vec<NodeId> = host
            .disk
            .acked
            .iter()
            .map(|r| r.target)
            .filter(|t| agent.down(*t).is_none())
            .collect();
        host.agent = Some(agent);
        let inc = host.disk.incarnation;
        self.log(|| format!("h{} agent starts, incarnation {inc}", hid(h)));
        if let Some(t) = missing.first() {
            self.fail(format!(
                "h{} lost the journaled DOWN of h{t} when its agent reloaded",
                hid(h)
            ));
        }
    }

    /// Host `h`'s agent dies (its domains run on); back after `d` if given.
    pub fn stop_agent(&mut self, h: usize, back_after: Option<Duration>) {
        let host = &mut self.hosts[h];
        if let Some(a) = host.agent.take() {
            host.disk.incarnation = host.disk.incarnation.max(a.incarnation());
        }
        host.generation += 1;
        host.agent_back_at = back_after.map(|d| self.now + d);
    }

    /// Host `h` loses power with every domain on it; `panic` sends kdump notices.
    pub fn power_off(&mut self, h: usize, panic: bool) {
        if !self.hosts[h].powered {
            return;
        }
        self.leaves.ended(h);
        self.stop_agent(h, None);
        let host = &mut self.hosts[h];
        host.powered = false;
        host.panicked = panic;
        host.frozen_until = Duration::ZERO;
        host.slow_until = Duration::ZERO;
        for g in 0..self.domain_host.len() {
            // A domain already off (killed, crashed) cannot start there either.
            if self.domain_host[g] == h {
                if self.guests.nodes[g].power != Power::Off {
                    self.guests.lose_power(g);
                }
                // It died in the life it was lost in, if it was lost already.
                if self.lost[g].is_none() {
                    self.lost[g] = Some((h, self.boot_incarnation[h]));
                }
                self.guests.held[g] = true;
            }
        }
        if panic {
            for to in (0..self.hosts.len()).filter(|&to| to != h) {
                if !self.net.cut(h, to, self.now) {
                    let at = self.now + self.rng.millis(20, 200);
                    self.notices.push((at, to, h));
                }
            }
        }
    }

    /// Host `h` boots: a fresh agent that reloads its journal; its BMC works again.
    pub fn boot(&mut self, h: usize) {
        if self.hosts[h].powered {
            return;
        }
        let host = &mut self.hosts[h];
        host.powered = true;
        host.fenced_off = false;
        self.fenced_by[h] = None;
        host.panicked = false;
        if host.device == Device::BmcDead {
            host.device = Device::Works;
        }
        self.start_agent(h);
        self.boot_incarnation[h] = self.hosts[h].disk.incarnation;
    }

    // ----- time -----

    /// One tick: the guests, then frames, fence results, notices and ticks of the
    /// hosts, then domain recovery.
    pub fn tick(&mut self) {
        self.guests.tick();
        self.now = self.guests.now;
        self.ticks += 1;
        let now = self.now;
        let slow_turn = self.ticks.is_multiple_of(4);
        for h in 0..self.hosts.len() {
            let back = self.hosts[h].agent_back_at.is_some_and(|t| t <= now);
            if back && self.hosts[h].powered {
                self.start_agent(h);
            }
        }
        self.sync_links();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.frames)
            .into_iter()
            .partition(|f| f.at <= now);
        self.frames = later;
        for mut f in due {
            let to = &self.hosts[f.to];
            if !to.powered || to.agent.is_none() {
                continue;
            }
            if !to.acting(now, slow_turn) {
                // Waits in the socket until the agent reads again.
                f.at = now + TICK;
                self.frames.push(f);
                continue;
            }
            self.deliver(f);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.done_at <= now);
        self.flights = later;
        for f in due {
            self.fence_done(f);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.notices)
            .into_iter()
            .partition(|n| n.0 <= now);
        self.notices = later;
        for (_, to, about) in due {
            self.notice(to, about);
        }
        for h in 0..self.hosts.len() {
            if self.hosts[h].acting(now, slow_turn) {
                if let Some(agent) = self.hosts[h].agent.as_mut() {
                    let effects = agent.tick(now);
                    self.perform(h, effects);
                }
            }
        }
        self.check_leaves();
        self.recover_domains();
    }

    /// A kdump notice from host `about`'s crash-kernel address reaches host `to` (if
    /// its agent reads): the real notice bytes, from the configured source address.
    pub fn notice(&mut self, to: usize, about: usize) {
        if self.hosts[to].acting(self.now, true) {
            self.log(|| format!("h{} gets a panic notice naming h{}", hid(to), hid(about)));
            let event = Event::Kdump {
                from: kdump_source(hid(about)),
                bytes: kdump::notice_bytes().to_vec(),
            };
            self.host_step(to, event);
        }
    }

    fn deliver(&mut self, f: HostFrame) {
        let host = &mut self.hosts[f.to];
        let Ok(accepted) = host
            .windows
            .entry(hid(f.from))
            .or_default()
            .accept(f.incarnation, f.sequence)
        else {
            return;
        };
        let now = self.now;
        let Some(agent) = self.hosts[f.to].agent.as_mut() else {
            return;
        };
        let effects = agent.heard(now, (hid(f.from), f.incarnation), accepted, &f.hb);
        self.perform(f.to, effects);
    }

    fn fence_done(&mut self, f: FenceFlight) {
        let t = f.target;
        // The BMC acts even if its requester died meanwhile.
        let works = self.hosts[t].device == Device::Works;
        if works {
            if self.hosts[t].powered {
                let b = f.by.0;
                self.log(|| format!("h{} is powered off by h{}'s fence", hid(t), hid(b)));
                self.power_off(t, false);
                self.fenced_by[t] = Some(b);
                // A duel: each host's fence took the other down.
                if self.fenced_by[b] == Some(t) {
                    self.fail(format!("h{} and h{} fenced each other", hid(b), hid(t)));
                }
            }
            self.hosts[t].fenced_off = true;
        }
        let by = &self.hosts[f.by.0];
        if by.generation == f.by.1 && by.agent.is_some() {
            let detail = if works { "off" } else { "fence device failed" };
            let event = Event::FenceLevelDone {
                target: hid(t),
                level: f.level,
                ok: works,
                detail: detail.into(),
            };
            self.host_step(f.by.0, event);
        }
    }

    /// Hands `event` to host `h`'s agent and performs what it asks.
    pub fn host_step(&mut self, h: usize, event: Event) {
        let now = self.now;
        let Some(agent) = self.hosts[h].agent.as_mut() else {
            return;
        };
        let effects = agent.step(now, event);
        self.perform(h, effects);
    }

    /// The operator confirms on host `by` that host `target` is off
    /// (`hvctl host confirm-down`); a refusal is kept in [`SystemWorld::last_refusal`].
    pub fn confirm_down(&mut self, by: usize, target: NodeId) {
        let Some(agent) = self.hosts[by].agent.as_mut() else {
            return;
        };
        match agent.confirm_down(target) {
            Ok(effects) => self.perform(by, effects),
            Err(why) => {
                self.log(|| format!("h{} refuses: {why}", hid(by)));
                self.last_refusal = Some(why);
            }
        }
    }

    pub(super) fn perform(&mut self, h: usize, effects: Effects) {
        for e in effects {
            if self.hosts[h].agent.is_none() {
                return;
            }
            match e {
                Effect::SendHeartbeats => self.send_heartbeats(h),
                Effect::RunFenceLevel { target, level, .. } => self.run_level(h, target, level),
                Effect::Journal { down: Some(r), .. } => self.journal(h, r),
                Effect::Fence(FenceEvent::Down(r)) => self.on_down(h, r),
                Effect::SendToGuest { conn, message } => self.send_to_guest(h, conn, message),
                // Counters, and what the host agent decides outside the core: VM HA
                // (`recover_domains`) runs every tick.
                Effect::Count(_) | Effect::HostDown(_) => {}
                other => self.log(|| format!("h{} {other:?}", hid(h))),
            }
        }
    }

    pub(super) fn send_heartbeats(&mut self, h: usize) {
        let now = self.now;
        // Domains that run on this host, by name.
        let here: Vec<String> = (0..self.domain_host.len())
            .filter(|&g| self.domain_host[g] == h && self.guests.nodes[g].power != Power::Off)
            .map(|g| guest_names(g as NodeId + 1).1)
            .collect();
        let agent = self.hosts[h].agent.as_mut().expect("the agent runs");
        let hb = agent.heartbeat(now, |d| here.iter().any(|x| x == d));
        let incarnation = agent.incarnation();
        for to in (0..self.hosts.len()).filter(|&to| to != h) {
            let s = self.hosts[h].sequences.entry(hid(to)).or_insert(0);
            *s += 1;
            let sequence = *s;
            let (loss, loss_until) = self.net.loss;
            if self.net.cut(h, to, now) || (now < loss_until && self.rng.chance(loss)) {
                continue;
            }
            let (pct, max_ms, until) = self.net.delay;
            let mut at = now + TICK;
            if now < until && self.rng.chance(pct) {
                at += self.rng.millis(1, max_ms.max(1));
            }
            let frame = HostFrame {
                at,
                from: h,
                to,
                incarnation,
                sequence,
                hb: hb.clone(),
            };
            let (dup, dup_until) = self.net.duplicate;
            if now < dup_until && self.rng.chance(dup) {
                let mut again = frame.clone();
                again.at += self.rng.millis(1, 600);
                self.frames.push(again);
            }
            self.frames.push(frame);
        }
    }

    fn run_level(&mut self, h: usize, target: NodeId, level: usize) {
        let quorate = self.hosts[h].agent.as_ref().is_some_and(|a| a.quorate());
        if !quorate {
            self.fail(format!("h{} fences h{target} without quorum", hid(h)));
        }
        let t = target as usize - 1;
        let agent = self.hosts[h].agent.as_ref().expect("the agent runs");
        let fresh = self.now.saturating_sub(agent.started_at()) < DEAD_AFTER * 2;
        if fresh && agent.sees_alive(target) && self.hosts[t].acting(self.now, true) {
            self.fail(format!(
                "h{}, just started, fences h{target}, which it sees alive and which only \
                 accuses its new incarnation",
                hid(h)
            ));
        }
        let took = match self.hosts[t].device {
            Device::Hangs => DEVICE_HANG,
            _ => self.rng.millis(20, 600),
        };
        self.log(|| {
            format!(
                "h{} runs level {} against h{target} ({took:?})",
                hid(h),
                level + 1
            )
        });
        self.flights.push(FenceFlight {
            done_at: self.now + took,
            by: (h, self.hosts[h].generation),
            target: t,
            level,
        });
    }

    fn journal(&mut self, h: usize, r: DownRecord) {
        self.judge_proof(h, &r);
        let now = self.now;
        let disk = &mut self.hosts[h].disk;
        let result = if disk.torn_next {
            disk.torn_next = false;
            disk.journal.push(None);
            self.log(|| format!("h{}'s journal write is torn: the agent dies", hid(h)));
            self.stop_agent(h, Some(Duration::from_millis(1000)));
            return;
        } else if disk.fsync_fails > 0 {
            disk.fsync_fails -= 1;
            Err("fsync failed (injected)".to_string())
        } else if now < disk.full_until {
            Err("no space left on device (injected)".to_string())
        } else {
            disk.journal.push(Some(r.clone()));
            disk.acked.push(r.clone());
            Ok(())
        };
        let down = Some(r);
        self.host_step(h, Event::Journaled { down, result });
    }

    fn on_down(&mut self, h: usize, r: DownRecord) {
        let t = r.target as usize - 1;
        if !self.hosts[h].disk.acked.contains(&r) {
            self.fail(format!(
                "h{} acts on the DOWN of h{} before journaling it",
                hid(h),
                r.target
            ));
        }
        // A record proves the life it was made in; acted on while the host runs a later
        // life, nothing proves that one off.
        let life = self
            .record_life
            .get(&(r.target, r.incarnation, r.by))
            .copied()
            .unwrap_or(r.incarnation);
        let stale = life < self.boot_incarnation[t];
        if stale && self.hosts[t].powered {
            self.fail(format!(
                "h{} holds h{} DOWN by an old record (incarnation {}, of its life {life}) \
                 while it runs a later life (booted as {})",
                hid(h),
                r.target,
                r.incarnation,
                self.boot_incarnation[t]
            ));
        }
        self.log(|| {
            format!(
                "h{} DOWN h{} ({:?}, by h{})",
                hid(h),
                r.target,
                r.proof,
                r.by
            )
        });
    }

    /// VM HA: the coordinator restarts, elsewhere, the domains that died with a host it
    /// holds DOWN. (Restarting one that still runs is caught by the guests' rule: an
    /// application never runs on two nodes.)
    fn recover_domains(&mut self) {
        let now = self.now;
        let Some(c) = (0..self.hosts.len()).find(|&c| {
            self.hosts[c].acting(now, true)
                && self.hosts[c]
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.coordinator(now))
        }) else {
            return;
        };
        for g in 0..self.domain_host.len() {
            let x = self.domain_host[g];
            let agent = self.hosts[c].agent.as_ref().expect("acting");
            if agent.down(hid(x)).is_none() {
                continue;
            }
            // The domains that died with the host: a domain started there again since
            // (by the operator, on a host that came back) is not recovered.
            let running = self.guests.nodes[g].power != Power::Off;
            let lost_here = matches!(self.lost[g], Some((lh, _)) if lh == x);
            if running || !lost_here {
                continue;
            }
            let agent = self.hosts[c].agent.as_ref().expect("acting");
            let Some(y) = (0..self.hosts.len())
                .filter(|&y| y != x && self.hosts[y].powered && self.hosts[y].agent.is_some())
                .filter(|&y| agent.sees_present(hid(y), now))
                .min_by_key(|&y| self.domain_host.iter().filter(|&&d| d == y).count())
            else {
                continue;
            };
            self.log(|| format!("h{} restarts g{}'s domain on h{}", hid(c), g + 1, hid(y)));
            self.domain_host[g] = y;
            self.lost[g] = None;
            self.guests.held[g] = false;
            self.guests.boot(g);
        }
    }
}
