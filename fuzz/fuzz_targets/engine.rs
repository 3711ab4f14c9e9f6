//! The application engine of a guest fed what its partners' guest heartbeats can say.
//! Any guest holding its guest cluster's key can send its partners gossip (placements
//! with any version, target and reason; reports with any activity), so whatever that
//! gossip says, together with node views, resource outcomes and time, nothing panics,
//! and the start guard holds (docs/guest-cluster.md, "Never on two nodes"): an
//! application starts here only when every other node of it is proved dead, or is heard,
//! does not hold this node down, and last reported the application inactive under the
//! current placement.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hvcluster_common::admin::GuestNodeState;
use hvcluster_common::application::{
    Activity, AppAction, AppReport, AppSpec, Engine, Gossip, NodeView, OpOutcome, Persistent,
    Placement, ResourceSpec, Version,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

const NODES: u32 = 3;

fn spec(name: &str, resources: usize) -> AppSpec {
    AppSpec {
        name: name.into(),
        nodes: (1..=NODES).collect(),
        auto_start_up: true,
        switch_on: BTreeSet::new(),
        persistent_fault: false,
        halt_flag: false,
        online_priority: false,
        standby_transitions: Vec::new(),
        restart_limit: 1,
        restart_window: Duration::from_secs(60),
        resources: (0..resources)
            .map(|r| ResourceSpec {
                name: format!("r{r}"),
                monitored: r % 2 == 0,
                standby_capable: r == 1,
                auto_recover: r == 0,
                check_interval: Duration::from_secs(1),
            })
            .collect(),
    }
}

/// A value of a small enum or struct, decoded from a few fuzzed bytes.
fn small<T: DeserializeOwned>(u: &mut Unstructured<'_>) -> Result<Option<T>> {
    let len = u.int_in_range(1..=4)?;
    Ok(postcard::from_bytes(u.bytes(len)?).ok())
}

fn node(u: &mut Unstructured<'_>) -> Result<u32> {
    u.int_in_range(0..=NODES + 1)
}

fn version(u: &mut Unstructured<'_>) -> Result<Version> {
    Ok(Version {
        epoch: if u.ratio(1, 16)? {
            u64::MAX
        } else {
            u.int_in_range(0..=6)?
        },
        issuer: node(u)?,
    })
}

fn gossip(u: &mut Unstructured<'_>, apps: usize) -> Result<Gossip> {
    let mut g = Gossip::default();
    for _ in 0..apps {
        g.placements.push(Placement {
            version: version(u)?,
            target: if u.arbitrary()? { Some(node(u)?) } else { None },
            maintenance: u.ratio(1, 8)?,
            clear: u.int_in_range(0..=3)?,
            reason: small(u)?.unwrap_or_default(),
            last_online: if u.arbitrary()? { Some(node(u)?) } else { None },
        });
        let Some(activity) = small(u)? else {
            return Ok(g);
        };
        g.reports.push(AppReport {
            activity,
            seen: version(u)?,
            fault: u.ratio(1, 8)?.then(|| "fault".to_string()),
            maintenance: u.ratio(1, 8)?,
            leaving: u.ratio(1, 8)?,
        });
    }
    for _ in 0..u.int_in_range(0..=2)? {
        g.held_down.push(node(u)?);
    }
    Ok(g)
}

fn views(u: &mut Unstructured<'_>) -> Result<Vec<NodeView>> {
    (1..=NODES)
        .map(|id| {
            Ok(NodeView {
                id,
                state: small::<GuestNodeState>(u)?.unwrap_or(GuestNodeState::Up),
                heard: id == 1 || u.arbitrary()?,
                proved_down: u.ratio(1, 6)?,
                incarnation: u.int_in_range(0..=3)?,
            })
        })
        .collect()
}

fn outcome(u: &mut Unstructured<'_>) -> Result<OpOutcome> {
    Ok(match u.int_in_range(0..=3)? {
        0 | 1 => match small(u)? {
            Some(state) => OpOutcome::Done(state),
            None => OpOutcome::TimedOut,
        },
        2 => OpOutcome::Failed {
            code: Some(u.int_in_range(-1..=255)?),
            detail: "failed".into(),
        },
        _ => OpOutcome::TimedOut,
    })
}

/// What the engine was told, as the start guard needs it.
#[derive(Default)]
struct Told {
    views: Vec<NodeView>,
    /// Per (application, node): the incarnation and report of its latest gossip.
    reports: BTreeMap<(usize, u32), (u64, AppReport)>,
    /// Per node: the incarnation of its latest gossip, and whether it held node 1 down.
    holds_me_down: BTreeMap<u32, (u64, bool)>,
}

impl Told {
    fn set_nodes(&mut self, views: &[NodeView]) {
        for v in views.iter().filter(|v| !v.heard) {
            self.reports.retain(|(_, n), _| *n != v.id);
            self.holds_me_down.remove(&v.id);
        }
        self.views = views.to_vec();
    }

    fn gossip(&mut self, from: u32, incarnation: u64, g: &Gossip, apps: usize) {
        if g.placements.len() != apps || g.reports.len() != apps {
            return;
        }
        let known = self.holds_me_down.get(&from).map_or(0, |(inc, _)| *inc);
        if incarnation >= known {
            let down = g.held_down.contains(&1);
            self.holds_me_down.insert(from, (incarnation, down));
        }
        for (i, r) in g.reports.iter().enumerate() {
            let known = self.reports.get(&(i, from)).map_or(0, |(inc, _)| *inc);
            if incarnation >= known {
                self.reports.insert((i, from), (incarnation, r.clone()));
            }
        }
    }

    /// Why application `i`, under placement version `placement`, may not start here.
    fn guard(&self, i: usize, placement: Version) -> Option<String> {
        for n in 2..=NODES {
            let Some(v) = self.views.iter().find(|v| v.id == n) else {
                return Some(format!("node {n} not known"));
            };
            if v.proved_down {
                continue;
            }
            if !v.heard {
                return Some(format!("node {n} not heard"));
            }
            if self
                .holds_me_down
                .get(&n)
                .is_some_and(|(inc, down)| *down && *inc >= v.incarnation)
            {
                return Some(format!("node {n} holds this node down"));
            }
            match self
                .reports
                .get(&(i, n))
                .filter(|(inc, _)| *inc >= v.incarnation)
            {
                None => return Some(format!("no report from node {n}")),
                Some((_, r)) if r.seen < placement => {
                    return Some(format!("node {n} has not applied {placement:?}"))
                }
                Some((_, r)) if !r.activity.inactive() => {
                    return Some(format!("it is {} on node {n}", r.activity))
                }
                Some(_) => {}
            }
        }
        None
    }
}

/// Each application's activity here, as this node reports it.
fn activities(engine: &Engine) -> Vec<Activity> {
    engine.gossip().reports.iter().map(|r| r.activity).collect()
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let specs = vec![spec("web", 2), spec("db", 1)];
    let apps = specs.len();
    let mut now = Duration::from_secs(100);
    let mut engine = Engine::new(1, specs, &Persistent::default(), now);
    let mut pending: Vec<u64> = Vec::new();
    let mut told = Told::default();
    let first = views(u)?;
    told.set_nodes(&first);
    let mut actions = engine.set_nodes(now, first);
    while !u.is_empty() {
        let before = activities(&engine);
        for a in &actions {
            if let AppAction::Run(op) = a {
                pending.push(op.id);
            }
        }
        actions = match u.int_in_range(0..=9)? {
            0 | 1 => {
                now += Duration::from_millis(u.int_in_range(0..=5000)?);
                engine.tick(now)
            }
            2 => {
                let v = views(u)?;
                told.set_nodes(&v);
                engine.set_nodes(now, v)
            }
            3..=6 => {
                // Only members other than this node get past the frame intake.
                let from = u.int_in_range(2..=NODES)?;
                let g = gossip(u, apps)?;
                let incarnation = u.int_in_range(0..=3)?;
                told.gossip(from, incarnation, &g, apps);
                engine.on_gossip(now, from, incarnation, &g)
            }
            7 | 8 => {
                let id = if pending.is_empty() || u.ratio(1, 8)? {
                    u.int_in_range(0..=50)?
                } else {
                    pending.remove(u.choose_index(pending.len())?)
                };
                let o = outcome(u)?;
                engine.on_result(now, id, o)
            }
            _ => {
                if u.ratio(1, 2)? {
                    engine.shutdown(now)
                } else {
                    // The agent is going away: nothing follows.
                    let _ = engine.abandon(now);
                    return Ok(());
                }
            }
        };
        let after = activities(&engine);
        let placements = engine.gossip().placements;
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            // A full start begins from a state where the application does not run here
            // (an in-place restart of an Online application goes Stopping -> Starting).
            let begins = matches!(
                b,
                Activity::Probing
                    | Activity::Offline
                    | Activity::Standby
                    | Activity::Inconsistent
                    | Activity::Faulted { .. }
            ) && *a == Activity::Starting;
            if begins {
                if let Some(why) = told.guard(i, placements[i].version) {
                    panic!("application {i} started here while {why}");
                }
            }
        }
        let _ = engine.views();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
