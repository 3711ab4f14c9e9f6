//! The whole system's steps: every fault and operator action is one value, chosen by
//! the scheduler from the world as it is, recorded, and applied again on a replay. A
//! step whose target no longer fits (a replay shrunk around it) does nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hosts::{Device, DiskFault};
use super::world::{hid, SystemWorld};
use crate::guests::steps::{self as guest_steps, GuestStep};
use crate::rng::Rng;

/// One step. Hosts are indices (node id minus one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Time passes, in milliseconds.
    Wait(u64),
    /// A step of the guest cluster.
    Guest(GuestStep),
    /// A host loses power; its BMC may die with it.
    HostCrash {
        /// The host.
        host: usize,
        /// Its fence device dies too.
        bmc_dies: bool,
    },
    /// A host's kernel panics: off, and its crash kernel sends kdump notices.
    HostPanic(usize),
    /// A host freezes for milliseconds (its domains run on).
    HostHang(usize, u64),
    /// A host's agent runs one tick in four, for milliseconds.
    HostSlow(usize, u64),
    /// A host that is off boots.
    HostBoot(usize),
    /// A host's agent restarts after milliseconds, reloading its journal.
    AgentRestart(usize, u64),
    /// A host's agent leaves the cluster cleanly and stops; it starts again after
    /// milliseconds.
    AgentLeave(usize, u64),
    /// A host is cut off from every other, for milliseconds.
    Isolate(usize, u64),
    /// Heartbeats from one host to another are lost, for milliseconds.
    CutOneWay(usize, usize, u64),
    /// Percent of heartbeats lost, for milliseconds.
    Loss(u64, u64),
    /// Percent of heartbeats duplicated, for milliseconds.
    Duplicate(u64, u64),
    /// Percent of heartbeats delayed up to the milliseconds given (so reordered), for
    /// milliseconds.
    Delay(u64, u64, u64),
    /// A kdump notice naming a live host reaches another host.
    ForgedNotice {
        /// The host it names.
        about: usize,
        /// The host that gets it.
        to: usize,
    },
    /// A host's fence device changes.
    Device(usize, Device),
    /// A host's journal disk fails.
    Disk(usize, DiskFault),
    /// The operator, on a host, confirms that a host is off (only when it is).
    ConfirmDown {
        /// The host the operator types on.
        by: usize,
        /// The host that is off.
        target: usize,
    },
}

/// Chooses the next step for the world as it is.
pub fn choose(w: &SystemWorld, rng: &mut Rng) -> Step {
    let n = w.hosts.len();
    let now = w.now;
    let h = rng.below(n as u64) as usize;
    let other = (h + 1 + rng.below(n as u64 - 1) as usize) % n;
    let running: Vec<usize> = (0..n).filter(|&i| w.hosts[i].powered).collect();
    let off: Vec<usize> = (0..n).filter(|&i| !w.hosts[i].powered).collect();
    let roll = rng.below(100);
    let step = match roll {
        0..=9 => Some(Step::Wait(500 + rng.below(5000))),
        // A leave is sent where it gets through: one lost is a silence, rightly fenced.
        10..=11 if w.hosts[h].acting(now, false) && quiet_links(w, h) => {
            Some(Step::AgentLeave(h, 1000 + rng.below(30_000)))
        }
        12..=51 => guest_steps::choose(&w.guests, rng).map(Step::Guest),
        52..=54 if running.len() > 1 => rng.pick(&running).map(|host| Step::HostCrash {
            host,
            bmc_dies: rng.chance(30),
        }),
        55..=56 if running.len() > 1 => rng.pick(&running).map(Step::HostPanic),
        57..=59 => Some(Step::HostHang(h, 300 + rng.below(6000))),
        60..=61 => Some(Step::HostSlow(h, 1000 + rng.below(8000))),
        62..=67 => rng.pick(&off).map(Step::HostBoot),
        68..=69 => Some(Step::AgentRestart(h, 100 + rng.below(3000))),
        70..=72 => Some(Step::Isolate(h, 300 + rng.below(6000))),
        73..=74 => Some(Step::CutOneWay(h, other, 300 + rng.below(6000))),
        75..=76 => Some(Step::Loss(10 + rng.below(50), 500 + rng.below(5000))),
        77 => Some(Step::Duplicate(10 + rng.below(60), 500 + rng.below(5000))),
        78..=79 => Some(Step::Delay(
            10 + rng.below(60),
            50 + rng.below(800),
            500 + rng.below(5000),
        )),
        80..=82 => {
            // Forged notices name a host whose agent answers; one that is frozen cannot
            // refute it, and a kdump level rightly takes its silence for the crash.
            let live: Vec<usize> = (0..n)
                .filter(|&i| w.hosts[i].acting(now, false) && quiet_links(w, i))
                .collect();
            rng.pick(&live).map(|about| Step::ForgedNotice {
                about,
                to: (about + 1 + rng.below(n as u64 - 1) as usize) % n,
            })
        }
        83..=88 => Some(Step::Device(
            h,
            match rng.below(4) {
                0 => Device::Works,
                1 => Device::Hangs,
                _ => Device::Fails,
            },
        )),
        89..=93 => Some(Step::Disk(
            h,
            match rng.below(3) {
                0 => DiskFault::FsyncFails(1 + rng.below(3) as u32),
                1 => DiskFault::Full(500 + rng.below(4000)),
                _ => DiskFault::Torn,
            },
        )),
        _ => match (rng.pick(&running), rng.pick(&off)) {
            (Some(by), Some(target)) => Some(Step::ConfirmDown { by, target }),
            _ => None,
        },
    };
    step.unwrap_or(Step::Wait(100 + rng.below(1000)))
}

/// Whether host `h`'s heartbeats get through: no loss, delay or cut in force on its
/// links. A kdump notice is not authenticated: a forged one naming a live host whose
/// heartbeats are lost for the suspect time counts as proof of a crash (the accepted
/// limit of fence_kdump, see docs/simulation.md), so the scheduler forges only where the
/// named host can refute it.
fn quiet_links(w: &SystemWorld, h: usize) -> bool {
    let now = w.now;
    let n = w.hosts.len();
    now >= w.net.loss.1
        && now >= w.net.delay.2
        && (0..n).all(|o| o == h || (!w.net.cut(h, o, now) && !w.net.cut(o, h, now)))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Applies `step`; returns how long it asks the world to run (only waits ask).
pub fn apply(w: &mut SystemWorld, step: &Step) -> Duration {
    let n = w.hosts.len();
    let fits = |i: usize| i < n;
    let now = w.now;
    if !matches!(step, Step::Guest(_)) {
        w.log(|| format!("step: {step:?}"));
    }
    match *step {
        Step::Wait(d) => return ms(d),
        Step::Guest(ref g) => return guest_steps::apply(&mut w.guests, g),
        Step::HostCrash { host, bmc_dies } => {
            if fits(host) && w.hosts[host].powered {
                if bmc_dies {
                    w.hosts[host].device = Device::BmcDead;
                }
                w.power_off(host, false);
            }
        }
        Step::HostPanic(host) => {
            if fits(host) {
                w.power_off(host, true);
            }
        }
        Step::HostHang(host, d) => {
            if fits(host) {
                w.hosts[host].frozen_until = now + ms(d);
            }
        }
        Step::HostSlow(host, d) => {
            if fits(host) {
                w.hosts[host].slow_until = now + ms(d);
            }
        }
        Step::HostBoot(host) => {
            if fits(host) {
                w.boot(host);
            }
        }
        Step::AgentRestart(host, d) => {
            if fits(host) && w.hosts[host].powered && w.hosts[host].agent.is_some() {
                w.stop_agent(host, Some(ms(d)));
            }
        }
        Step::AgentLeave(host, d) => {
            if fits(host) && w.hosts[host].acting(now, false) && quiet_links(w, host) {
                w.leave(host, ms(d));
            }
        }
        Step::Isolate(host, d) => {
            for b in (0..n).filter(|&b| b != host) {
                w.net.cuts.push(((host, b), now + ms(d)));
                w.net.cuts.push(((b, host), now + ms(d)));
            }
        }
        Step::CutOneWay(a, b, d) => w.net.cuts.push(((a, b), now + ms(d))),
        Step::Loss(p, d) => w.net.loss = (p, now + ms(d)),
        Step::Duplicate(p, d) => w.net.duplicate = (p, now + ms(d)),
        Step::Delay(p, most, d) => w.net.delay = (p, most, now + ms(d)),
        Step::ForgedNotice { about, to } => {
            // As chosen: a forgery names a host whose agent answers, and whose answers
            // arrive (see `quiet_links`).
            if fits(about) && fits(to) && w.hosts[about].acting(now, false) && quiet_links(w, about)
            {
                w.notice(to, about);
            }
        }
        Step::Device(host, device) => {
            // A dead BMC comes back only with its host's power.
            if fits(host) && w.hosts[host].device != Device::BmcDead {
                w.hosts[host].device = device;
            }
        }
        Step::Disk(host, fault) => {
            if fits(host) {
                let disk = &mut w.hosts[host].disk;
                match fault {
                    DiskFault::FsyncFails(k) => disk.fsync_fails = k,
                    DiskFault::Full(d) => disk.full_until = now + ms(d),
                    DiskFault::Torn => disk.torn_next = true,
                }
            }
        }
        Step::ConfirmDown { by, target } => {
            // The careful operator confirms only a host that really is off.
            if fits(by) && fits(target) && by != target && !w.hosts[target].powered {
                w.confirm_down(by, hid(target));
            }
        }
    }
    Duration::ZERO
}
