//! `hvlab bench failover`: the phases from a fault to the application Online on the
//! partner guest, and every moment an application was Online on two guests, all
//! computed from a run's events.
//!
//! Phases, each from the end of the previous one (absent when an end was not seen).
//! After a host fault: `detect` (fault to the first survivor's `host_state` to Failed
//! about the host), `fence` (to the first `host_down` about it), `notify` (to the
//! partner guest's `host_down_notice`). After a guest fault: `detect` (to the first
//! other guest's `node_state` to LEFTCLUSTER or DOWN about it), `fence` (to its host's
//! `guest_destroyed`), `notify` (to the partner's `node_killed` about it). Then
//! `switch` (to the partner's `app_state` to Online) and `total` (fault to Online on
//! the partner).
//!
//! Online spans: a guest's `app_state` to Online or Warning opens one, any other state
//! closes it. A killed guest records nothing, so the fault closes the spans of the
//! guests it took down: at the fault for a power loss, a crash or a guest crash; at the
//! first `host_down` about the host for a host hang, at the guest's destruction for a
//! guest hang (a frozen guest resumes when thawed, so it counts as Online until it is
//! confirmed off). Spans still open close at the end of the run.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use hvcluster_common::admin::EventRecord;
use serde::Serialize;

use super::{percentiles, unix_now_us, Percentiles};
use crate::cluster::LabCluster;
use crate::scenario::{self, Outcome, RunOptions, Scenario, Step};

/// When the guests a fault took down stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// At the fault: power loss, crash, guest crash.
    AtFault,
    /// At the first `host_down` about the host: a host hang, ended by fencing.
    AtHostDown,
    /// When its host destroyed it: a guest hang, ended by a kill through the hosts.
    AtDestroyed,
}

/// The fault a failover run is measured from, and what it took down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When the run's last fault step started, µs since the epoch.
    pub at_us: u64,
    /// Host it stopped or froze; `None` for a fault of a guest alone.
    pub host: Option<String>,
    /// Guests it took down.
    pub guests: Vec<String>,
    /// When those guests stopped running.
    pub end: GuestEnd,
}

impl Fault {
    /// The last step of `scenario` that stops or freezes a host or a guest, timed at
    /// `at_us`; `None` when it has none.
    pub fn of(scenario: &Scenario, at_us: u64) -> Option<Fault> {
        let guests_on = |host: &str| -> Vec<String> {
            scenario
                .cluster
                .guests
                .iter()
                .filter(|g| g.host == host)
                .map(|g| g.name.clone())
                .collect()
        };
        scenario.steps.iter().rev().find_map(|st| {
            let (host, guests, end) = match st {
                Step::PowerLoss { host } | Step::Crash { host } => {
                    (Some(host.clone()), guests_on(host), GuestEnd::AtFault)
                }
                Step::Hang { host } => (Some(host.clone()), guests_on(host), GuestEnd::AtHostDown),
                Step::GuestCrash { guest } => (None, vec![guest.clone()], GuestEnd::AtFault),
                Step::GuestHang { guest } => (None, vec![guest.clone()], GuestEnd::AtDestroyed),
                _ => return None,
            };
            Some(Fault {
                at_us,
                host,
                guests,
                end,
            })
        })
    }
}

/// Nodes of each application of `scenario`, by application name.
pub fn applications(scenario: &Scenario) -> BTreeMap<String, Vec<String>> {
    scenario
        .cluster
        .applications
        .iter()
        .filter_map(|t| {
            let name = t.get("name")?.as_str()?.to_string();
            let nodes = t
                .get("nodes")
                .and_then(|n| n.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Some((name, nodes))
        })
        .collect()
}

/// Figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailoverRun {
    /// Application measured: the one Online on a guest the fault took down.
    pub app: Option<String>,
    /// Guest it came Online on after the fault.
    pub partner: Option<String>,
    /// Phases seen, ms.
    pub phases: BTreeMap<&'static str, f64>,
    /// When it came Online on no partner: ms from the fault to the end of the run
    /// during which it was Online nowhere.
    pub stuck_ms: Option<f64>,
    /// Moments an application was Online on two guests or more, over the whole run.
    pub violations: usize,
}

/// One guest's Online spans of each application, µs: application, guest, spans.
type Spans = BTreeMap<String, BTreeMap<String, Vec<(u64, u64)>>>;

/// The state an `app_state` event moved its application to, and the application.
fn app_state(e: &EventRecord) -> Option<(&str, &str)> {
    if e.kind != "app_state" {
        return None;
    }
    let to = e.detail["state"]["to"].as_str()?;
    let app = e
        .subject
        .as_deref()
        .or_else(|| e.detail["state"]["app"].as_str())?;
    Some((app, to))
}

/// Whether an application in state `to` runs on its guest.
fn runs(to: &str) -> bool {
    to == "Online" || to == "Warning"
}

/// First event at or after the fault that `f` accepts.
fn first_after<'a>(
    events: &'a [EventRecord],
    fault: &Fault,
    f: impl Fn(&EventRecord) -> bool,
) -> Option<&'a EventRecord> {
    events
        .iter()
        .filter(|e| e.unix_us >= fault.at_us && f(e))
        .min_by_key(|e| e.unix_us)
}

/// The `guest_destroyed` event of the host that destroyed one of the fault's guests.
/// It does not name the guest: it is the next one, by the same host for the same
/// requester, after a `guest_destroying` about the guest.
fn destroyed<'a>(events: &'a [EventRecord], fault: &Fault) -> Option<&'a EventRecord> {
    let down: BTreeSet<&str> = fault.guests.iter().map(String::as_str).collect();
    let destroying = first_after(events, fault, |e| {
        e.kind == "guest_destroying" && e.subject.as_deref().is_some_and(|g| down.contains(g))
    })?;
    first_after(events, fault, |e| {
        e.kind == "guest_destroyed"
            && e.unix_us >= destroying.unix_us
            && e.observer == destroying.observer
            && e.detail["by"] == destroying.detail["by"]
            && e.detail["ok"] == true
    })
}

/// When the guests the fault took down stopped running, if they did during the run.
fn guests_end_us(fault: &Fault, events: &[EventRecord]) -> Option<u64> {
    match fault.end {
        GuestEnd::AtFault => Some(fault.at_us),
        GuestEnd::AtHostDown => {
            let host = fault.host.as_deref()?;
            first_after(events, fault, |e| {
                e.kind == "host_down" && e.subject.as_deref() == Some(host)
            })
            .map(|e| e.unix_us)
        }
        GuestEnd::AtDestroyed => destroyed(events, fault).map(|e| e.unix_us),
    }
}

fn push_span(spans: &mut Spans, app: &str, guest: &str, from: u64, to: u64) {
    spans
        .entry(app.to_string())
        .or_default()
        .entry(guest.to_string())
        .or_default()
        .push((from, to.max(from)));
}

/// What one guest reported, or what happened to it, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change<'a> {
    /// It stopped running, and every application with it.
    Died,
    /// It put `app` in a state where it runs there (`runs`) or not.
    State { app: &'a str, runs: bool },
}

/// Every guest's Online spans of every application, closed at the end of the run.
fn online_spans(fault: &Fault, events: &[EventRecord], end_us: u64) -> Spans {
    let mut changes: Vec<(u64, Change, &str)> = events
        .iter()
        .filter_map(|e| {
            let (app, to) = app_state(e)?;
            let change = Change::State {
                app,
                runs: runs(to),
            };
            Some((e.unix_us, change, e.observer.as_str()))
        })
        .collect();
    if let Some(at) = guests_end_us(fault, events) {
        changes.extend(fault.guests.iter().map(|g| (at, Change::Died, g.as_str())));
    }
    // Deaths sort before state changes at the same instant; otherwise event order.
    changes.sort_by_key(|c| (c.0, c.1 != Change::Died));
    let mut open: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut spans = Spans::new();
    for (at, change, guest) in changes {
        match change {
            Change::State { app, runs: true } => {
                open.entry((app, guest)).or_insert(at);
            }
            Change::State { app, runs: false } => {
                if let Some(from) = open.remove(&(app, guest)) {
                    push_span(&mut spans, app, guest, from, at);
                }
            }
            Change::Died => {
                let dead: Vec<_> = open.keys().filter(|k| k.1 == guest).copied().collect();
                for k in dead {
                    let from = open.remove(&k).unwrap_or(at);
                    push_span(&mut spans, k.0, k.1, from, at);
                }
            }
        }
    }
    for ((app, guest), from) in open {
        push_span(&mut spans, app, guest, from, end_us);
    }
    spans
}

/// Times the number of guests running one application rose from one to two or more.
fn overlaps(by_guest: &BTreeMap<String, Vec<(u64, u64)>>) -> usize {
    // Ends sort before starts at the same instant: a hand-over is not an overlap.
    let mut edges: Vec<(u64, i32)> = by_guest
        .values()
        .flatten()
        .filter(|(from, to)| to > from)
        .flat_map(|&(from, to)| [(from, 1), (to, -1)])
        .collect();
    edges.sort();
    let mut running = 0;
    let mut count = 0;
    for (_, d) in edges {
        running += d;
        if d > 0 && running == 2 {
            count += 1;
        }
    }
    count
}

/// Time in `[from, to)` covered by none of `spans`, µs.
fn uncovered_us(spans: &[(u64, u64)], from: u64, to: u64) -> u64 {
    let mut clipped: Vec<(u64, u64)> = spans
        .iter()
        .map(|&(a, b)| (a.max(from), b.min(to)))
        .filter(|(a, b)| b > a)
        .collect();
    clipped.sort();
    let mut covered = 0;
    let mut reach = from;
    for (a, b) in clipped {
        let a = a.max(reach);
        if b > a {
            covered += b - a;
            reach = b;
        }
    }
    to.saturating_sub(from) - covered
}

/// The events that end `detect`, `fence` and `notify`, as far as they were seen.
fn milestones<'a>(
    fault: &Fault,
    events: &'a [EventRecord],
    partners: &BTreeSet<&str>,
) -> [Option<&'a EventRecord>; 3] {
    let down: BTreeSet<&str> = fault.guests.iter().map(String::as_str).collect();
    let about_down = |e: &EventRecord| e.subject.as_deref().is_some_and(|g| down.contains(g));
    let Some(h) = fault.host.as_deref() else {
        let detect = first_after(events, fault, |e| {
            e.kind == "node_state"
                && about_down(e)
                && !down.contains(e.observer.as_str())
                && (e.detail["to"] == "LEFTCLUSTER" || e.detail["to"] == "DOWN")
        });
        let notice = first_after(events, fault, |e| {
            e.kind == "node_killed" && about_down(e) && partners.contains(e.observer.as_str())
        });
        return [detect, destroyed(events, fault), notice];
    };
    let detect = first_after(events, fault, |e| {
        e.kind == "host_state"
            && e.subject.as_deref() == Some(h)
            && e.observer != h
            && e.detail["host_state"]["to"].get("failed").is_some()
    });
    let fence = first_after(events, fault, |e| {
        e.kind == "host_down" && e.subject.as_deref() == Some(h) && e.observer != h
    });
    let notice = first_after(events, fault, |e| {
        e.kind == "host_down_notice" && partners.contains(e.observer.as_str())
    });
    [detect, fence, notice]
}

/// Phases, stuck time and violations of one run: `events` of the run, `apps` the nodes
/// of each application, `end_us` when the run's last step finished.
pub fn analyse(
    fault: &Fault,
    apps: &BTreeMap<String, Vec<String>>,
    events: &[EventRecord],
    end_us: u64,
) -> FailoverRun {
    let spans = online_spans(fault, events, end_us);
    let violations = spans.values().map(overlaps).sum();
    let down: BTreeSet<&str> = fault.guests.iter().map(String::as_str).collect();
    let ran_on_down = |app: &str| {
        spans.get(app).is_some_and(|g| {
            g.iter().any(|(guest, s)| {
                down.contains(guest.as_str())
                    && s.iter().any(|&(a, b)| a <= fault.at_us && b >= fault.at_us)
            })
        })
    };
    let app = apps
        .keys()
        .find(|a| ran_on_down(a))
        .or_else(|| {
            apps.iter()
                .find(|(_, nodes)| nodes.iter().any(|n| down.contains(n.as_str())))
                .map(|(a, _)| a)
        })
        .cloned();
    let mut run = FailoverRun {
        app: app.clone(),
        violations,
        ..FailoverRun::default()
    };
    let ms = |from: u64, to: u64| (to as f64 - from as f64) / 1000.0;
    let online = app.as_deref().and_then(|a| {
        first_after(events, fault, |e| {
            !down.contains(e.observer.as_str())
                && app_state(e).is_some_and(|(app, to)| app == a && to == "Online")
        })
    });
    run.partner = online.map(|e| e.observer.clone());
    let partners: BTreeSet<&str> = match &run.partner {
        Some(p) => BTreeSet::from([p.as_str()]),
        None => app
            .as_deref()
            .and_then(|a| apps.get(a))
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|n| !down.contains(n))
            .collect(),
    };
    let [detect, fence, notice] = milestones(fault, events, &partners);
    let at = |e: Option<&EventRecord>| e.map(|e| e.unix_us);
    let chain = [
        ("detect", Some(fault.at_us), at(detect)),
        ("fence", at(detect), at(fence)),
        ("notify", at(fence), at(notice)),
        ("switch", at(notice), at(online)),
        ("total", Some(fault.at_us), at(online)),
    ];
    for (phase, from, to) in chain {
        if let (Some(from), Some(to)) = (from, to) {
            run.phases.insert(phase, ms(from, to));
        }
    }
    if online.is_none() {
        if let Some(a) = app.as_deref() {
            let all: Vec<(u64, u64)> = spans
                .get(a)
                .into_iter()
                .flat_map(|g| g.values().flatten().copied())
                .collect();
            run.stuck_ms = Some(uncovered_us(&all, fault.at_us, end_us) as f64 / 1000.0);
        }
    }
    run
}

/// Result of `hvlab bench failover`.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverBench {
    /// Always "failover".
    pub bench: String,
    /// Scenario run.
    pub scenario: String,
    /// Runs attempted.
    pub runs: usize,
    /// Runs whose every expectation held.
    pub ok_runs: usize,
    /// Phase figures over the ok runs.
    pub phases_ms: BTreeMap<String, Percentiles>,
    /// Over the ok runs in which the application came Online on no partner: time from
    /// the fault to the end of the run with it Online nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_ms: Option<Percentiles>,
    /// Ok runs in which the application came Online on no partner.
    #[serde(skip_serializing_if = "is_zero")]
    pub stuck_runs: usize,
    /// Moments an application was Online on two guests, over all runs.
    pub violations: usize,
    /// Why runs failed, if any did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Checks that `scenario` has something to fail over before any lab is started.
fn validate(scenario: &Scenario) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let apps = applications(scenario);
    if apps.is_empty() {
        bail!(
            "scenario {}: no [[cluster.application]]: bench failover needs a guest \
             application (see linked-power-loss)",
            scenario.name
        );
    }
    if Fault::of(scenario, 0).is_none() {
        bail!(
            "scenario {}: no power-loss, crash, hang, guest-crash or guest-hang step: bench \
             failover measures from one",
            scenario.name
        );
    }
    Ok(apps)
}

/// One run, and when its last step finished (before the lab is removed).
fn run_once(scenario: &Scenario) -> anyhow::Result<(Outcome, u64)> {
    let mut cluster =
        LabCluster::start(&scenario.cluster).context("cannot start the lab cluster")?;
    let outcome = scenario::run_on(&mut cluster, scenario, RunOptions::default());
    let end_us = unix_now_us();
    drop(cluster);
    Ok((outcome?, end_us))
}

/// Runs `scenario` `runs` times and gathers the failover phases of each run.
pub fn failover(scenario: &Scenario, runs: usize, progress: bool) -> anyhow::Result<FailoverBench> {
    let apps = validate(scenario)?;
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut stuck = Vec::new();
    let mut ok_runs = 0;
    let mut violations = 0;
    let mut failures = Vec::new();
    for i in 0..runs {
        let (outcome, end_us) = match run_once(scenario) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("run {}: {e:#}", i + 1));
                if progress {
                    eprintln!("run {}/{runs}: error {e:#}", i + 1);
                }
                continue;
            }
        };
        let fault = Fault::of(scenario, outcome.last_fault_us)
            .context("validated: the scenario has a fault")?;
        let figures = analyse(&fault, &apps, &outcome.events, end_us);
        violations += figures.violations;
        if outcome.ok() {
            ok_runs += 1;
            for (k, v) in &figures.phases {
                samples.entry(k.to_string()).or_default().push(*v);
            }
            stuck.extend(figures.stuck_ms);
        } else {
            failures.push(super::failed_run(i, &outcome));
        }
        if progress {
            eprintln!(
                "run {}/{runs}: {}  {:?}{}  violations {}",
                i + 1,
                if outcome.ok() { "ok" } else { "FAILED" },
                figures.phases,
                figures
                    .stuck_ms
                    .map(|s| format!("  stuck {s:.1} ms"))
                    .unwrap_or_default(),
                figures.violations
            );
        }
    }
    Ok(FailoverBench {
        bench: "failover".into(),
        scenario: scenario.name.clone(),
        runs,
        ok_runs,
        phases_ms: samples
            .iter()
            .filter_map(|(k, v)| percentiles(v).map(|p| (k.clone(), p)))
            .collect(),
        stuck_ms: percentiles(&stuck),
        stuck_runs: stuck.len(),
        violations,
        failures,
    })
}

#[cfg(test)]
mod tests;
