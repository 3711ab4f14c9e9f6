//! VM HA: the highly available domains (`[[vm_ha.domain]]`) of a host that was fenced
//! start again on the surviving hosts. Every host keeps the list of lost domains; the
//! coordinator (the quorate partition's lowest live host) places them with
//! [`hvcluster_common::vmha::plan`] and publishes its assignments in its heartbeats; each
//! assigned host starts its domains once, and says in its heartbeats when a start
//! failed, so the coordinator places that domain elsewhere. A domain is no longer lost
//! once any host not proved down reports it running. One that fits nowhere waits, with
//! an event, and is placed as soon as room appears.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hvcluster_common::config::NodeId;
use hvcluster_common::hostlink::{HaAssignment, HaFailure, HaLost, HostCapacity};
use hvcluster_common::vmha::{self, Lost, Placement, Room};
use serde_json::json;

use super::{Agent, Input};

/// A highly available domain whose host was fenced, not running anywhere yet.
#[derive(Debug, Clone)]
struct LostDomain {
    lost: Lost,
    /// The host it ran on.
    from: NodeId,
    /// When its host was declared DOWN.
    since: Duration,
    /// The last reason it waits that was reported (so it is reported once).
    waiting: Option<String>,
}

/// What this host knows and decided about VM HA.
#[derive(Debug, Default)]
pub(super) struct VmHa {
    lost: BTreeMap<String, LostDomain>,
    /// This host's assignments, as coordinator.
    plan: Vec<HaAssignment>,
    /// The assignments the other hosts published last.
    remote_plans: BTreeMap<NodeId, Vec<HaAssignment>>,
    /// The failed starts the other hosts published last.
    remote_failed: BTreeMap<NodeId, Vec<HaFailure>>,
    /// This host's failed starts, with when they failed.
    failed: BTreeMap<String, (String, Duration)>,
    /// Assignments to this host already acted on (UUIDs).
    acted: BTreeSet<String>,
    /// This host's capacity, and the others'.
    pub(super) capacity: Option<HostCapacity>,
    remote_capacity: BTreeMap<NodeId, HostCapacity>,
}

impl VmHa {
    /// What `host` last reported its hypervisor can give.
    pub(super) fn remote_capacity(&self, host: NodeId) -> Option<HostCapacity> {
        self.remote_capacity.get(&host).copied()
    }

    /// What this host publishes in its heartbeats: its assignments, failed starts and
    /// the domains it holds lost.
    pub(super) fn published(&self) -> (Vec<HaAssignment>, Vec<HaFailure>, Vec<HaLost>) {
        let failed = self
            .failed
            .iter()
            .map(|(uuid, (detail, _))| HaFailure {
                uuid: uuid.clone(),
                detail: detail.clone(),
            })
            .collect();
        let lost = self
            .lost
            .values()
            .map(|l| HaLost {
                uuid: l.lost.uuid.clone(),
                name: l.lost.name.clone(),
                memory_kib: l.lost.memory_kib,
                vcpus: l.lost.vcpus,
                priority: l.lost.priority,
                from: l.from,
            })
            .collect();
        (self.plan.clone(), failed, lost)
    }
}

impl Agent {
    /// `target` is DOWN with proof: its highly available domains are lost.
    pub(super) fn vm_ha_host_down(&mut self, target: NodeId) {
        let now = self.now();
        let ha = &self.config.vm_ha.domains;
        let Some(listed) = self.remote_domains.get(&target) else {
            return;
        };
        let mut news = Vec::new();
        for d in listed {
            let Some(entry) = ha.iter().find(|e| e.name == d.name) else {
                continue;
            };
            if self.vm_ha.lost.contains_key(&d.uuid) {
                continue;
            }
            news.push(LostDomain {
                lost: Lost {
                    name: d.name.clone(),
                    uuid: d.uuid.clone(),
                    memory_kib: d.memory_kib,
                    vcpus: d.vcpus,
                    priority: entry.priority,
                    excluded: Vec::new(),
                },
                from: target,
                since: now,
                waiting: None,
            });
        }
        if news.is_empty() {
            return;
        }
        let host = self.name(target);
        let names: Vec<&str> = news.iter().map(|l| l.lost.name.as_str()).collect();
        self.member.events.record(
            Some(&host),
            "vm_ha_lost",
            format!(
                "{host} is down: its highly available domains {} restart on the surviving hosts",
                names.join(", ")
            ),
            json!({ "host": host, "domains": names }),
        );
        for l in news {
            self.vm_ha.lost.insert(l.lost.uuid.clone(), l);
        }
        self.vm_ha_tick();
    }

    /// A heartbeat of `from` arrived with its capacity, plan, failed starts and the
    /// domains it holds lost: one this host did not know (its agent restarted since the
    /// DOWN) and that runs nowhere is lost here too.
    pub(super) fn vm_ha_heard(
        &mut self,
        from: NodeId,
        hb: &hvcluster_common::host_heartbeat::HostSections,
    ) {
        match hb.capacity {
            Some(c) => self.vm_ha.remote_capacity.insert(from, c),
            None => self.vm_ha.remote_capacity.remove(&from),
        };
        if self.vm_ha.remote_failed.get(&from) != Some(&hb.ha_failed) {
            self.vm_ha.remote_failed.insert(from, hb.ha_failed.clone());
        }
        let unknown: Vec<&HaLost> = hb
            .ha_lost
            .iter()
            .filter(|l| !self.vm_ha.lost.contains_key(&l.uuid))
            .collect();
        if !unknown.is_empty() {
            let running: Vec<String> = self
                .domain_holders()
                .into_iter()
                .flat_map(|(_, ds)| ds.iter().map(|d| d.uuid.clone()))
                .collect();
            let now = self.now();
            for l in unknown.into_iter().filter(|l| !running.contains(&l.uuid)) {
                self.vm_ha.lost.insert(
                    l.uuid.clone(),
                    LostDomain {
                        lost: Lost {
                            name: l.name.clone(),
                            uuid: l.uuid.clone(),
                            memory_kib: l.memory_kib,
                            vcpus: l.vcpus,
                            priority: l.priority,
                            excluded: Vec::new(),
                        },
                        from: l.from,
                        since: now,
                        waiting: None,
                    },
                );
            }
        }
        if self.vm_ha.remote_plans.get(&from) != Some(&hb.ha_plan) {
            self.vm_ha.remote_plans.insert(from, hb.ha_plan.clone());
            self.vm_ha_act();
        }
    }

    /// Every second (with the domain listing) and when something changed: drops the lost
    /// domains that run again, forgets old failures and, on the coordinator, places the
    /// others.
    pub(super) fn vm_ha_tick(&mut self) {
        let now = self.now();
        let retry = Duration::from_millis(self.config.vm_ha.retry_ms);
        // A failure that expired lets this host try that domain again.
        let expired: Vec<String> = self
            .vm_ha
            .failed
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= retry)
            .map(|(u, _)| u.clone())
            .collect();
        for u in &expired {
            self.vm_ha.failed.remove(u);
            self.vm_ha.acted.remove(u);
        }
        if self.vm_ha.lost.is_empty() && self.vm_ha.plan.is_empty() {
            // Nothing lost, nothing assigned: the usual second of a healthy cluster.
            return;
        }
        let running: BTreeMap<String, NodeId> = self
            .domain_holders()
            .into_iter()
            .flat_map(|(h, ds)| ds.iter().map(move |d| (d.uuid.clone(), h)))
            .collect();
        let back: Vec<LostDomain> = self
            .vm_ha
            .lost
            .values()
            .filter(|l| running.contains_key(&l.lost.uuid))
            .cloned()
            .collect();
        for l in back {
            self.vm_ha.lost.remove(&l.lost.uuid);
            let on = self.name(running[&l.lost.uuid]);
            let from = self.name(l.from);
            let took = now.saturating_sub(l.since).as_millis() as u64;
            self.member.events.record(
                Some(&l.lost.name),
                "vm_ha_restarted",
                format!(
                    "{} runs again, on {on} (it ran on {from}; {took} ms after {from} was down)",
                    l.lost.name
                ),
                json!({ "domain": l.lost.name, "on": on, "from": from, "ms": took }),
            );
        }
        let was = std::mem::take(&mut self.vm_ha.plan);
        if self.vm_ha_coordinator() {
            self.vm_ha.plan = self.vm_ha_place();
        }
        self.vm_ha.plan.sort();
        if self.vm_ha.plan != was {
            self.send_heartbeats();
        }
        // Also when nothing changed: an assignment held back while its domain was still
        // listed by a host not yet DOWN here is taken up once that DOWN is journaled.
        self.vm_ha_act();
    }

    /// Whether this host places lost domains: its partition is quorate and it is the
    /// lowest of the hosts present in it (a lower host merely Suspect still counts, so
    /// two hosts never place at once).
    fn vm_ha_coordinator(&self) -> bool {
        !self.vm_ha.lost.is_empty()
            && self.core.membership().quorum().quorate
            && self.vm_ha_coordinator_id() == self.member.me
    }

    /// The coordinator (the host core's one rule: the lowest host present, Up or
    /// Suspect, this one included): whose assignments count.
    fn vm_ha_coordinator_id(&self) -> NodeId {
        self.core.coordinator(self.now())
    }

    /// The coordinator's assignments: those already given (by it or a coordinator before
    /// it) to a host still Up where the start did not fail stay; the other lost domains
    /// are placed on the room left.
    fn vm_ha_place(&mut self) -> Vec<HaAssignment> {
        let now = self.now();
        let me = self.member.me;
        let up: Vec<NodeId> = std::iter::once(me)
            .chain(
                self.core
                    .membership()
                    .peers(now)
                    .into_iter()
                    .filter(|p| p.state == hvcluster_common::membership::HostState::Up)
                    .map(|p| p.node),
            )
            .collect();
        let failed_on = |uuid: &str| -> Vec<NodeId> {
            let mut hosts: Vec<NodeId> = self
                .vm_ha
                .remote_failed
                .iter()
                .filter(|(_, f)| f.iter().any(|f| f.uuid == uuid))
                .map(|(h, _)| *h)
                .collect();
            if self.vm_ha.failed.contains_key(uuid) {
                hosts.push(me);
            }
            hosts
        };
        let mut rooms: Vec<Room> = self
            .domain_holders()
            .into_iter()
            .filter(|(h, _)| up.contains(h))
            // A host in maintenance takes no domain.
            .filter(|(h, _)| !self.in_maintenance(*h))
            .filter_map(|(h, ds)| {
                let cap = if h == me {
                    self.vm_ha.capacity
                } else {
                    self.vm_ha.remote_capacity.get(&h).copied()
                }?;
                Some(Room {
                    host: h,
                    memory_kib: cap.memory_kib,
                    cpus: cap.cpus,
                    used_memory_kib: ds.iter().map(|d| d.memory_kib).sum(),
                    used_vcpus: ds.iter().map(|d| d.vcpus).sum(),
                })
            })
            .collect();
        // Assignments of an earlier coordinator still Up count; those of a host gone do not.
        let given: Vec<&HaAssignment> = self
            .vm_ha
            .plan
            .iter()
            .chain(
                self.vm_ha
                    .remote_plans
                    .iter()
                    .filter(|(h, _)| up.contains(h))
                    .flat_map(|(_, p)| p),
            )
            .collect();
        let mut plan = Vec::new();
        let mut to_place = Vec::new();
        for l in self.vm_ha.lost.values() {
            let excluded = failed_on(&l.lost.uuid);
            let kept = given.iter().find(|a| {
                a.uuid == l.lost.uuid && up.contains(&a.host) && !excluded.contains(&a.host)
            });
            match kept {
                Some(a) => {
                    if let Some(r) = rooms.iter_mut().find(|r| r.host == a.host) {
                        r.used_memory_kib += l.lost.memory_kib;
                        r.used_vcpus += l.lost.vcpus;
                    }
                    plan.push((*a).clone());
                }
                None => to_place.push(Lost {
                    excluded,
                    ..l.lost.clone()
                }),
            }
        }
        plan.dedup();
        let mut waiting = Vec::new();
        for (uuid, placement) in vmha::plan(&to_place, &mut rooms, self.config.vm_ha.vcpu_ratio) {
            let name = self.vm_ha.lost[&uuid].lost.name.clone();
            match placement {
                Placement::On(host) => plan.push(HaAssignment { uuid, name, host }),
                Placement::Nowhere { roomiest } => {
                    let l = &self.vm_ha.lost[&uuid].lost;
                    let why = match roomiest {
                        Some((h, free)) => format!(
                            "it needs {} MiB and {} vCPU; the most free memory is {} MiB, on {}",
                            l.memory_kib / 1024,
                            l.vcpus,
                            free / 1024,
                            self.name(h)
                        ),
                        None => {
                            "no host may take it now (its start failed on every live host)".into()
                        }
                    };
                    waiting.push((uuid, why));
                }
            }
        }
        for (uuid, why) in waiting {
            let l = self
                .vm_ha
                .lost
                .get_mut(&uuid)
                .expect("placed from the lost list");
            if l.waiting.as_ref() == Some(&why) {
                continue;
            }
            l.waiting = Some(why.clone());
            let name = l.lost.name.clone();
            self.member.counters.bump("vm_ha_waits");
            self.member.events.record(
                Some(&name),
                "vm_ha_waiting",
                format!("{name} fits on no surviving host and waits (retried every second): {why}"),
                json!({ "domain": name, "why": why }),
            );
        }
        plan
    }

    /// Starts the domains assigned to this host (by any coordinator), once each.
    fn vm_ha_act(&mut self) {
        let me = self.member.me;
        // Only the coordinator's assignments are acted on.
        let coordinator = self.vm_ha_coordinator_id();
        let plan = if coordinator == me {
            &self.vm_ha.plan
        } else {
            match self.vm_ha.remote_plans.get(&coordinator) {
                Some(p) => p,
                None => return,
            }
        };
        let assigned: BTreeMap<String, String> = plan
            .iter()
            .filter(|a| a.host == me)
            .map(|a| (a.uuid.clone(), a.name.clone()))
            .collect();
        // Forget what is no longer assigned here, so a later assignment is acted on.
        self.vm_ha.acted.retain(|u| assigned.contains_key(u));
        let Some(libvirt) = self.libvirt.clone() else {
            return;
        };
        for (uuid, name) in assigned {
            if self.vm_ha.failed.contains_key(&uuid) || self.vm_ha.acted.contains(&uuid) {
                continue;
            }
            // Still listed by a host not yet DOWN here (its DOWN may be on its way to
            // this host's journal): not started now, and asked again on the next tick.
            let elsewhere = self
                .domain_holders()
                .into_iter()
                .any(|(_, ds)| ds.iter().any(|d| d.uuid == uuid));
            if elsewhere {
                continue;
            }
            self.vm_ha.acted.insert(uuid.clone());
            let own = self.member.own_name.clone();
            self.member.events.record(
                Some(&name),
                "vm_ha_starting",
                format!("starting {name} on {own} (VM HA)"),
                json!({ "domain": name, "on": own }),
            );
            let tx = self.member.tx.clone();
            let libvirt = libvirt.clone();
            self.member.spawn(async move {
                let n = name.clone();
                let limit = Duration::from_secs(60);
                let result = crate::hv_call::call(&libvirt, limit, move |hv| hv.start(&n)).await;
                let _ = tx.send(Input::HaStarted { uuid, name, result }).await;
            });
        }
    }

    /// A VM HA start on this host ended.
    pub(super) fn vm_ha_started(&mut self, uuid: String, name: String, result: Result<(), String>) {
        let own = self.member.own_name.clone();
        match result {
            Ok(()) => {
                self.member.counters.bump("vm_ha_starts");
                self.member.events.record(
                    Some(&name),
                    "vm_ha_started",
                    format!("{name} started on {own} (VM HA)"),
                    json!({ "domain": name, "on": own }),
                );
            }
            Err(why) => {
                self.member.counters.bump("vm_ha_start_failures");
                self.member.events.record(
                    Some(&name),
                    "vm_ha_start_failed",
                    format!("cannot start {name} on {own}: {why}; another host is tried"),
                    json!({ "domain": name, "on": own, "why": why }),
                );
                self.vm_ha.failed.insert(uuid, (why, self.now()));
                self.send_heartbeats();
            }
        }
    }
}
