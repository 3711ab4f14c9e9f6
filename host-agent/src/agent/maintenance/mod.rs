//! `hvctl host maintenance HOST on|off`: evacuating a host for service, and bringing
//! it back.
//!
//! On: the host takes no domain any more (no migration to it, no VM HA start; shared in
//! its heartbeats), and moves every domain it runs, one at a time, each to the Up host
//! not in maintenance with the most free memory that can take it, as `[[migration.domain]]`
//! says (else `[migration] evacuate_mode`). A domain that cannot move now (no room, its
//! guest cluster switching) is tried again; one that still cannot after a few tries is
//! reported stuck and stays. Off: the host takes domains again and asks, in its
//! heartbeats, for those evacuated with `failback = true` back; the host that runs one
//! moves it. The state (on, what was moved where) is journaled in
//! `<state_dir>/maintenance.json`, so a restart keeps the host in maintenance. The file is
//! written by the state writer thread: `on` or `off` takes effect, and is answered, once
//! it is on disk; a disk that does not take it within 10 s leaves everything as it was
//! (that decision: `hvcluster_common::host::maintenance`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hvcluster_common::admin::Response;
use hvcluster_common::config::NodeId;
use hvcluster_common::host::maintenance::{MaintenanceCommand, MaintenanceState as Journal};
use hvcluster_common::membership::HostState;
use serde_json::json;
use tokio::sync::oneshot;

use super::migrate::Move;
use super::Agent;

mod command;

/// Tries of a domain that cannot move before it is reported stuck.
const TRIES: u32 = 10;
/// Pause between two tries of the same domain.
const RETRY: Duration = Duration::from_secs(2);
/// Pause before a host asks again to move a domain back (failback).
const FAILBACK_RETRY: Duration = Duration::from_secs(10);

/// This host's maintenance, and the others'.
#[derive(Debug, Default)]
pub(super) struct Maintenance {
    pub(super) file: PathBuf,
    state: Journal,
    /// An operator's change being saved.
    command: MaintenanceCommand<oneshot::Sender<Response>>,
    /// Domains still to move, with their tries, and when the next may begin.
    queue: VecDeque<(String, u32)>,
    next_at: Option<Instant>,
    /// Domains that could not move, and why.
    stuck: BTreeMap<String, String>,
    /// The evacuation's end was reported.
    reported: bool,
    /// Hosts in maintenance, from their heartbeats.
    remote: BTreeSet<NodeId>,
    /// Failbacks asked by other hosts: domain → when this host last tried.
    failback_tried: BTreeMap<String, Instant>,
    /// Domains other hosts want back, by host.
    wanted: BTreeMap<NodeId, Vec<String>>,
}

impl Maintenance {
    /// Reads the journal of `state_dir`, with what was wrong with it. A file that cannot
    /// be read is moved aside and the host counts as in maintenance (it takes no domain,
    /// and moves none) until an operator says on or off: it may have been in maintenance,
    /// and a host being serviced must not be given domains.
    pub(super) fn open(state_dir: &std::path::Path) -> (Self, Option<String>) {
        let file = state_dir.join("maintenance.json");
        let (state, problem) = read(&file);
        let m = Maintenance {
            file,
            state,
            ..Maintenance::default()
        };
        (m, problem)
    }

    /// This host is in maintenance.
    pub(super) fn on(&self) -> bool {
        self.state.on
    }

    /// Domains this host asks back (failback).
    pub(super) fn failback(&self) -> Vec<String> {
        self.state.failback.clone()
    }

    /// A heartbeat of `from` says whether it is in maintenance and what it wants back.
    pub(super) fn heard(&mut self, from: NodeId, on: bool, failback: &[String]) {
        if on {
            self.remote.insert(from);
        } else {
            self.remote.remove(&from);
        }
        if failback.is_empty() {
            self.wanted.remove(&from);
        } else {
            self.wanted.insert(from, failback.to_vec());
        }
    }
}

/// The state in `file`: none when it is missing; when unreadable, in maintenance with
/// nothing to move, the file moved aside, and why.
fn read(file: &std::path::Path) -> (Journal, Option<String>) {
    let why = match std::fs::read(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Journal::default(), None),
        Err(e) => e.to_string(),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(state) => return (state, None),
            Err(e) => e.to_string(),
        },
    };
    let kept = match crate::apps::set_aside::set_aside(file) {
        Ok(aside) => format!("kept as {}", aside.display()),
        Err(e) => e,
    };
    let held = Journal {
        on: true,
        ..Journal::default()
    };
    let problem = format!(
        "{} is unreadable ({why}); {kept}. This host counts as in maintenance (it takes no \
         domain and moves none) until you run hvctl host maintenance HOST off (take domains \
         again) or on (evacuate it)",
        file.display()
    );
    (held, Some(problem))
}

impl Agent {
    /// Whether `host` (this one included) is in maintenance.
    pub(super) fn in_maintenance(&self, host: NodeId) -> bool {
        if host == self.member.me {
            self.maintenance.on()
        } else {
            self.maintenance.remote.contains(&host)
        }
    }

    /// `on`, on disk: the host takes no domain and moves its domains away.
    fn maintenance_on(&mut self) -> String {
        self.maintenance.state = self.maintenance_target(true);
        let names: Vec<String> = self.domains.iter().map(|d| d.name.clone()).collect();
        let m = &mut self.maintenance;
        m.queue = names.iter().map(|n| (n.clone(), 0)).collect();
        m.stuck.clear();
        m.reported = false;
        m.next_at = None;
        let own = self.member.own_name.clone();
        self.member.events.record(
            Some(&own),
            "maintenance_on",
            format!(
                "{own} is in maintenance: it takes no domain, and moves away {}",
                if names.is_empty() {
                    "nothing (it runs none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
            json!({ "domains": names }),
        );
        format!(
            "{own} is in maintenance; moving {} domain(s) away{}: follow it with hvctl events \
             -f and hvctl status",
            names.len(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            }
        )
    }

    /// `off`, on disk: the host takes domains again and asks back those configured to
    /// come back.
    fn maintenance_off(&mut self) -> String {
        self.maintenance.state = self.maintenance_target(false);
        let wanted = self.maintenance.state.failback.clone();
        self.maintenance.queue.clear();
        let own = self.member.own_name.clone();
        let back = if wanted.is_empty() {
            "no domain is configured to come back (failback)".to_string()
        } else {
            format!("asking back {}", wanted.join(", "))
        };
        self.member.events.record(
            Some(&own),
            "maintenance_off",
            format!("{own} is out of maintenance: it takes domains again; {back}"),
            json!({ "failback": wanted }),
        );
        format!("{own} is out of maintenance; {back}")
    }

    /// Moves the next domain of an evacuation, and the domains other hosts want back.
    pub(super) fn maintenance_tick(&mut self) {
        let busy = self.migrations.busy();
        if self.maintenance.on() && !busy {
            self.evacuate_next();
        }
        if !busy {
            self.failback_others();
        }
    }

    /// The hypervisor listed its domains: a domain asked back (failback) that runs here
    /// again is no longer asked for.
    pub(super) fn failback_arrived(&mut self) {
        let here = &self.domains;
        let (back, still): (Vec<String>, Vec<String>) =
            std::mem::take(&mut self.maintenance.state.failback)
                .into_iter()
                .partition(|n| here.iter().any(|d| &d.name == n));
        self.maintenance.state.failback = still;
        if back.is_empty() {
            return;
        }
        self.maintenance_save_current();
        let own = self.member.own_name.clone();
        for n in back {
            self.member.events.record(
                Some(&n),
                "failback_done",
                format!("{n} is back on {own}"),
                json!({ "domain": n }),
            );
        }
        self.send_heartbeats();
    }

    /// Starts moving the next domain of the evacuation.
    fn evacuate_next(&mut self) {
        if self.maintenance.next_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Some((name, tries)) = self.maintenance.queue.pop_front() else {
            if !self.maintenance.reported {
                self.maintenance.reported = true;
                let own = self.member.own_name.clone();
                let moved = self.maintenance.state.evacuated.len();
                let stuck: Vec<String> = self
                    .maintenance
                    .stuck
                    .iter()
                    .map(|(n, why)| format!("{n} ({why})"))
                    .collect();
                self.member.events.record(
                    Some(&own),
                    "maintenance_evacuated",
                    format!(
                        "{own} is evacuated: {moved} domain(s) moved{}",
                        if stuck.is_empty() {
                            String::new()
                        } else {
                            format!("; still here: {}", stuck.join(", "))
                        }
                    ),
                    json!({ "moved": moved, "stuck": self.maintenance.stuck }),
                );
            }
            return;
        };
        let Some(domain) = self.domains.iter().find(|d| d.name == name).cloned() else {
            return; // Gone meanwhile (stopped, moved by hand).
        };
        let Some(to) = self.roomiest_host(domain.memory_kib, domain.vcpus) else {
            return self.maintenance_retry(
                name,
                tries,
                "no Up host out of maintenance has room".into(),
            );
        };
        let order = self.maintenance_move(&name, to);
        self.maintenance.queue.push_front((name.clone(), tries));
        if let Err(why) = self.start_move(order, &mut None) {
            self.maintenance.queue.pop_front();
            self.maintenance_retry(name, tries, why);
        }
    }

    fn maintenance_retry(&mut self, name: String, tries: u32, why: String) {
        if tries + 1 >= TRIES {
            let own = self.member.own_name.clone();
            self.member.events.record(
                Some(&name),
                "maintenance_stuck",
                format!("{name} cannot leave {own}: {why}; it stays (hvctl host maintenance {own} on tries again)"),
                json!({ "domain": name, "why": why }),
            );
            self.maintenance.stuck.insert(name, why);
        } else {
            self.maintenance.queue.push_back((name, tries + 1));
            self.maintenance.next_at = Some(Instant::now() + RETRY);
        }
    }

    /// A move of the evacuation (or a failback) ended: where to, or why not.
    pub(super) fn maintenance_moved(&mut self, name: &str, outcome: Result<NodeId, String>) {
        let queued = self
            .maintenance
            .queue
            .front()
            .is_some_and(|(n, _)| n == name);
        let tries = if queued {
            self.maintenance.queue.pop_front().map_or(0, |(_, t)| t)
        } else {
            return; // A failback: the asking host follows it through its listing.
        };
        match outcome {
            Ok(to) => {
                self.maintenance
                    .state
                    .evacuated
                    .push((name.to_string(), to));
                self.maintenance_save_current();
            }
            Err(why) => self.maintenance_retry(name.to_string(), tries, why),
        }
    }

    /// The move of `name` to `to` for an evacuation or a failback, in the mode its
    /// `[[migration.domain]]` gives (else `[migration] evacuate_mode`).
    fn maintenance_move(&self, name: &str, to: NodeId) -> Move {
        let m = &self.config.migration;
        let mode = m
            .domains
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.mode)
            .unwrap_or(m.evacuate_mode);
        Move {
            name: name.to_string(),
            to: self.name(to),
            mode,
            max_downtime_ms: None,
            timeout_s: None,
            leave_paused: false,
            start: false,
            dry_run: false,
            maintenance: true,
        }
    }

    /// The Up host, not in maintenance and not this one, with the most free memory that
    /// can take a domain of `memory_kib` and `vcpus` (vCPUs within `[vm_ha] vcpu_ratio`).
    fn roomiest_host(&self, memory_kib: u64, vcpus: u32) -> Option<NodeId> {
        let me = self.member.me;
        let ratio = self.config.vm_ha.vcpu_ratio;
        let peers = self.core.membership().peers(self.now());
        peers
            .iter()
            .filter(|p| p.state == HostState::Up && p.node != me && !self.in_maintenance(p.node))
            .filter_map(|p| {
                let cap = self.vm_ha.remote_capacity(p.node)?;
                let ds = self
                    .remote_domains
                    .get(&p.node)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let used: u64 = ds.iter().map(|d| d.memory_kib).sum();
                let cpus: u32 = ds.iter().map(|d| d.vcpus).sum();
                let free = cap.memory_kib.checked_sub(used + memory_kib)?;
                (f64::from(cpus + vcpus) <= ratio * f64::from(cap.cpus)).then_some((free, p.node))
            })
            .max_by_key(|(free, node)| (*free, std::cmp::Reverse(*node)))
            .map(|(_, node)| node)
    }

    /// Moves back a domain another host wants (failback), one at a time.
    fn failback_others(&mut self) {
        let wanted: Vec<(NodeId, String)> = self
            .maintenance
            .wanted
            .iter()
            .flat_map(|(h, names)| names.iter().map(move |n| (*h, n.clone())))
            .collect();
        for (host, name) in wanted {
            if !self.domains.iter().any(|d| d.name == name) {
                continue;
            }
            let recent = self
                .maintenance
                .failback_tried
                .get(&name)
                .is_some_and(|t| t.elapsed() < FAILBACK_RETRY);
            if recent {
                continue;
            }
            self.maintenance
                .failback_tried
                .insert(name.clone(), Instant::now());
            let to = self.name(host);
            let order = self.maintenance_move(&name, host);
            match self.start_move(order, &mut None) {
                Ok(_) => {
                    self.member.events.record(
                        Some(&name),
                        "failback",
                        format!("{name}: {to} wants it back after its maintenance: moving it"),
                        json!({ "domain": name, "to": to }),
                    );
                    return;
                }
                Err(why) => tracing::info!(domain = %name, %why, "failback not possible now"),
            }
        }
    }

    /// This host's maintenance in words, for status (none when it is not in it).
    pub(super) fn maintenance_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let m = &self.maintenance;
        if m.on() {
            let moved = m.state.evacuated.len();
            let left: Vec<&str> = m.queue.iter().map(|(n, _)| n.as_str()).collect();
            let mut line = format!(
                "{}: in maintenance, {moved} domain(s) moved away",
                self.member.own_name
            );
            if !left.is_empty() {
                line.push_str(&format!(", still to move: {}", left.join(", ")));
            }
            if !m.stuck.is_empty() {
                let stuck: Vec<String> = m
                    .stuck
                    .iter()
                    .map(|(n, why)| format!("{n} ({why})"))
                    .collect();
                line.push_str(&format!(", stuck: {}", stuck.join(", ")));
            }
            out.push(line);
        } else if !m.state.failback.is_empty() {
            out.push(format!(
                "{}: waiting for {} to come back (failback)",
                self.member.own_name,
                m.state.failback.join(", ")
            ));
        }
        for h in &m.remote {
            out.push(format!("{}: in maintenance", self.name(*h)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_state_is_moved_aside_and_holds_the_host_in_maintenance() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("maintenance.json");
        std::fs::write(&file, b"\x00\x01 torn").unwrap();
        let (m, problem) = Maintenance::open(dir.path());
        let problem = problem.expect("reported");
        assert!(problem.contains("unreadable") && problem.contains("hvctl host maintenance"));
        assert!(m.on(), "a host that may be in service takes no domain");
        assert!(m.state.evacuated.is_empty(), "and moves none");
        assert!(!file.exists());
        let (m, problem) = Maintenance::open(dir.path());
        assert!(problem.is_none() && !m.on(), "missing is simply off");
    }
}
