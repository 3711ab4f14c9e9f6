//! The host agent's view of the cluster's domains: its own hypervisor's, listed every
//! second, and the other hosts', from their heartbeats; the double-run alarm and the
//! start refusal built on them.

use std::time::Duration;

use hvcluster_common::config::NodeId;
use serde_json::json;

use super::{Agent, Input};

impl Agent {
    /// `hvctl vm start NAME`: starts the domain here unless it runs anywhere in the
    /// cluster already.
    pub(super) fn vm_start(
        &mut self,
        name: String,
        reply: tokio::sync::oneshot::Sender<hvcluster_common::admin::Response>,
    ) {
        use hvcluster_common::admin::Response;
        let me = self.member.me;
        let running_on = self
            .domain_holders()
            .into_iter()
            .find(|(_, ds)| ds.iter().any(|d| d.name == name || d.uuid == name))
            .map(|(h, _)| h);
        let own = self.member.own_name.clone();
        if let Some(host) = running_on {
            let where_ = if host == me {
                "here".to_string()
            } else {
                format!("on {}", self.name(host))
            };
            let message = format!(
                "{name} already runs {where_}: starting it on {own} too would run it twice"
            );
            self.member.events.record(
                Some(&name),
                "operator",
                format!("operator: hvctl vm start {name}: refused: {message}"),
                json!({ "command": "hvctl vm start", "domain": name, "accepted": false }),
            );
            let _ = reply.send(Response::Refused { message });
            return;
        }
        let done = format!("{name} started on {own}");
        self.libvirt_call("hvctl vm start", name.clone(), reply, move |hv| {
            hv.start(&name).map(|()| done)
        });
    }

    /// `hvctl vm stop|suspend|resume NAME`: on this host's hypervisor.
    pub(super) fn vm_operation(
        &mut self,
        request: hvcluster_common::admin::Request,
        reply: tokio::sync::oneshot::Sender<hvcluster_common::admin::Response>,
    ) {
        use hvcluster_common::admin::Request;
        use hvcluster_libvirt::Stopped;
        let own = self.member.own_name.clone();
        match request {
            Request::VmStop {
                name, force: true, ..
            } => {
                let n = name.clone();
                self.libvirt_call("hvctl vm stop", name, reply, move |hv| {
                    if hv.info(&n)?.is_none() {
                        return Ok(format!("{n} is not defined on {own}"));
                    }
                    Ok(match hv.destroy(&n)? {
                        hvcluster_libvirt::Destroyed::Now => format!("{n} powered off on {own}"),
                        hvcluster_libvirt::Destroyed::WasNotRunning => {
                            format!("{n} was not running on {own}")
                        }
                    })
                });
            }
            Request::VmStop {
                name, timeout_s, ..
            } => {
                let timeout = Duration::from_secs(timeout_s.unwrap_or(120).min(3600));
                let n = name.clone();
                self.libvirt_call("hvctl vm stop", name, reply, move |hv| {
                    Ok(match hv.shutdown(&n, timeout)? {
                        Stopped::Gracefully => format!("{n} shut down on {own}"),
                        Stopped::Destroyed => format!(
                            "{n} did not shut down within {} s and was powered off on {own}",
                            timeout.as_secs()
                        ),
                        Stopped::WasNotRunning => format!("{n} was not running on {own}"),
                        Stopped::NotDefined => format!("{n} is not defined on {own}"),
                    })
                });
            }
            Request::VmSuspend { name } => {
                let n = name.clone();
                self.libvirt_call("hvctl vm suspend", name, reply, move |hv| {
                    hv.suspend(&n).map(|()| format!("{n} paused on {own}"))
                });
            }
            Request::VmResume { name } => {
                let n = name.clone();
                self.libvirt_call("hvctl vm resume", name, reply, move |hv| {
                    hv.resume(&n).map(|()| format!("{n} runs again on {own}"))
                });
            }
            other => {
                let message = format!("not a domain operation: {other:?}");
                let _ = reply.send(hvcluster_common::admin::Response::Error { message });
            }
        }
    }

    /// Runs an operator's libvirt call off the async threads (bounded to 10 minutes, a
    /// graceful shutdown included), records it as an operator event and answers.
    fn libvirt_call(
        &mut self,
        command: &'static str,
        name: String,
        reply: tokio::sync::oneshot::Sender<hvcluster_common::admin::Response>,
        call: impl FnOnce(&dyn crate::hypervisor::Hypervisor) -> Result<String, String> + Send + 'static,
    ) {
        use hvcluster_common::admin::Response;
        let Some(libvirt) = self.libvirt.clone() else {
            let message = "this host has no [hypervisor] uri: it controls no domains".to_string();
            let _ = reply.send(Response::Refused { message });
            return;
        };
        let events = self.member.events.clone();
        self.member.spawn(async move {
            // A graceful stop may take its whole timeout (at most an hour), then a destroy.
            let limit = Duration::from_secs(3700);
            let response = match crate::hv_call::call(&libvirt, limit, call).await {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message },
            };
            let ok = matches!(response, Response::Done { .. });
            events.record(
                Some(&name),
                "operator",
                format!(
                    "operator: {command} {name}: {}",
                    if ok { "done" } else { "failed" }
                ),
                json!({ "command": command, "domain": name, "accepted": ok }),
            );
            let _ = reply.send(response);
        });
    }

    /// The hypervisor listed its domains (or could not).
    pub(super) fn on_domains(&mut self, listed: Result<Listing, String>) {
        match listed {
            Ok(Listing {
                domains: list,
                capacity,
            }) => {
                self.vm_ha.capacity = capacity.map(|c| hvcluster_common::hostlink::HostCapacity {
                    memory_kib: c.memory_kib,
                    cpus: c.cpus,
                });
                if let Some(was) = self.hypervisor_problem.take() {
                    let me = self.member.own_name.clone();
                    self.member.events.record(
                        Some(&me),
                        "hypervisor_back",
                        format!("the hypervisor answers again (it was: {was})"),
                        json!({}),
                    );
                }
                let booted: Vec<String> = list
                    .iter()
                    .filter(|d| d.state == crate::hypervisor::State::Running && d.booted)
                    .map(|d| d.uuid.clone())
                    .collect();
                let mut now: Vec<hvcluster_common::hostlink::DomainPresence> = list
                    .into_iter()
                    .filter(|d| d.state.may_run())
                    .map(|d| hvcluster_common::hostlink::DomainPresence {
                        name: d.name,
                        uuid: d.uuid,
                        state: format!("{:?}", d.state),
                        memory_kib: d.memory_kib,
                        vcpus: d.vcpus,
                    })
                    .collect();
                now.sort();
                if std::mem::replace(&mut self.domains_listed, true) {
                    // Domains that began running here since the last listing (not at
                    // this agent's first listing: they may have run for long).
                    // Only those booted here count: one that arrived by migration (or
                    // was resumed or restored) is the same instance, not a second one.
                    let appeared: Vec<_> = now
                        .iter()
                        .filter(|d| booted.contains(&d.uuid))
                        .filter(|d| !self.domains.iter().any(|o| o.uuid == d.uuid))
                        .cloned()
                        .collect();
                    for d in appeared {
                        self.on_domain_appeared(d);
                    }
                }
                if now != self.domains {
                    self.domains = now;
                    self.check_double_runs();
                    self.send_heartbeats();
                }
                self.settle_interrupted_migration();
                self.failback_arrived();
                self.vm_ha_tick();
            }
            Err(why) => {
                // A host whose hypervisor does not answer takes no domains.
                self.vm_ha.capacity = None;
                self.vm_ha_tick();
                if self.hypervisor_problem.as_ref() != Some(&why) {
                    let me = self.member.own_name.clone();
                    self.member.events.record(
                        Some(&me),
                        "hypervisor_unreachable",
                        format!("cannot list the domains: {why}"),
                        json!({ "why": why }),
                    );
                    self.hypervisor_problem = Some(why);
                }
            }
        }
    }

    /// A domain began running here. If another host not proved down runs it already, it
    /// was started behind the cluster's back (every start through the cluster is refused
    /// then): by the `double_run` policy, destroy this newer instance.
    fn on_domain_appeared(&mut self, d: hvcluster_common::hostlink::DomainPresence) {
        let me = self.member.me;
        let others: Vec<String> = self
            .domain_holders()
            .into_iter()
            .filter(|(h, ds)| *h != me && ds.iter().any(|o| o.uuid == d.uuid))
            .map(|(h, _)| self.name(h))
            .collect();
        if others.is_empty() {
            return;
        }
        let policy = self.config.hypervisor.double_run;
        let Some(libvirt) = self
            .libvirt
            .clone()
            .filter(|_| policy == hvcluster_common::config::DoubleRunPolicy::DestroyNewer)
        else {
            return;
        };
        let own = self.member.own_name.clone();
        let name = d.name.clone();
        self.member.events.record(
            Some(&name),
            "domain_double_run_resolving",
            format!(
                "domain {name} began running on {own} while it runs on {}: it was started \
                 behind the cluster's back; destroying the instance on {own} (policy \
                 destroy-newer)",
                others.join(" and ")
            ),
            json!({ "domain": name, "uuid": d.uuid, "kept_on": others, "destroyed_on": own }),
        );
        self.member.counters.bump("domain_double_run_destroys");
        let events = self.member.events.clone();
        self.member.spawn(async move {
            let n = name.clone();
            let limit = Duration::from_secs(30);
            let (ok, why) = match crate::hv_call::call(&libvirt, limit, move |hv| hv.destroy(&n)).await {
                Ok(_) => (true, format!("the instance of {name} on {own} is off")),
                Err(e) => (false, e),
            };
            events.record(
                Some(&name),
                if ok {
                    "domain_double_run_resolved"
                } else {
                    "domain_double_run_unresolved"
                },
                if ok {
                    why.clone()
                } else {
                    format!("cannot destroy the newer instance of {name} on {own}: {why}; it runs twice")
                },
                json!({ "domain": name, "ok": ok, "detail": why }),
            );
        });
    }

    /// The domain lists of this host and of every other host not proved down: where each
    /// domain may be running. A host that failed but is not fenced yet still counts, so
    /// nothing it ran is started elsewhere before it is proved off.
    pub(super) fn domain_holders(
        &self,
    ) -> Vec<(NodeId, &[hvcluster_common::hostlink::DomainPresence])> {
        let machine = self.core.fencing().machine();
        std::iter::once((self.member.me, self.domains.as_slice()))
            .chain(
                self.remote_domains
                    .iter()
                    .filter(|(h, _)| machine.down(**h).is_none())
                    .map(|(h, d)| (*h, d.as_slice())),
            )
            .collect()
    }

    /// The domain lists of this host and of every other live host (Up or Suspect).
    pub(super) fn live_domains(
        &self,
    ) -> Vec<(NodeId, &[hvcluster_common::hostlink::DomainPresence])> {
        let live: Vec<NodeId> = self
            .core
            .membership()
            .peers(self.now())
            .into_iter()
            .filter(|p| p.state.present())
            .map(|p| p.node)
            .collect();
        std::iter::once((self.member.me, self.domains.as_slice()))
            .chain(
                self.remote_domains
                    .iter()
                    .filter(|(h, _)| live.contains(h))
                    .map(|(h, d)| (*h, d.as_slice())),
            )
            .collect()
    }

    /// Reports, once, every domain that runs on two hosts or more at the same time (the
    /// hosts that count are this one and those Up or Suspect).
    pub(super) fn check_double_runs(&mut self) {
        let locks = self.migrations.all();
        let mut runs = std::mem::take(&mut self.double_runs);
        let effects = runs.check(&self.live_domains(), &locks, self.core.names());
        self.double_runs = runs;
        self.perform(effects);
    }
}

/// One listing of the hypervisor.
#[derive(Debug)]
pub struct Listing {
    /// Every domain defined or running.
    pub domains: Vec<crate::hypervisor::DomainInfo>,
    /// What the host can give its domains.
    pub capacity: Option<crate::hypervisor::Capacity>,
}

/// Lists the hypervisor's domains every second, off the async threads.
pub(super) async fn poll_domains(
    libvirt: crate::hv_call::Hv,
    tx: tokio::sync::mpsc::Sender<Input>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (listed, hung) = list_once(libvirt.clone()).await;
        if tx.send(Input::Domains(listed)).await.is_err() {
            return;
        }
        if let Some(call) = hung {
            // One hung call at a time: the next listing waits until this one returns,
            // rather than tying up one more thread every period.
            if let Ok(listed) = call.await {
                if tx.send(Input::Domains(listed)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Lists the hypervisor's domains once, off the async threads, waiting at most 10 s;
/// the call is handed back when it did not return by then.
pub(super) async fn list_once(
    libvirt: crate::hv_call::Hv,
) -> (
    Result<Listing, String>,
    Option<crate::hv_call::Hung<Listing>>,
) {
    crate::hv_call::call_or_hung(&libvirt, Duration::from_secs(10), |hv| {
        let domains = hv.list()?;
        // Capacity is for VM HA placement; a host that cannot say takes no domains.
        let capacity = hv.capacity().ok();
        Ok(Listing { domains, capacity })
    })
    .await
}

impl Agent {
    /// A start or stop of a host-side application's resource ended: the hypervisor is
    /// listed again before the engine hears of it, so that the heartbeat saying the
    /// resource stopped also says which domains still run here. Without it a host
    /// taking the application over could still see the stopped domain in this host's
    /// last listing (up to a second old) and refuse to start it a second time.
    pub(super) fn relist_then_report(
        &mut self,
        id: u64,
        outcome: hvcluster_common::application::OpOutcome,
    ) {
        let Some(libvirt) = self.libvirt.clone() else {
            self.app_result(id, outcome, None);
            return;
        };
        let tx = self.member.tx.clone();
        self.member.spawn(async move {
            let (listed, hung) = list_once(libvirt).await;
            // A hypervisor that does not answer delays no result: the periodic listing
            // reports it.
            let listed = if hung.is_some() { None } else { Some(listed) };
            let _ = tx
                .send(Input::AppOpListed {
                    id,
                    outcome,
                    listed,
                })
                .await;
        });
    }

    /// Gives the engine a resource operation's result, after the listing taken once it
    /// ended (when there is one).
    pub(super) fn app_result(
        &mut self,
        id: u64,
        outcome: hvcluster_common::application::OpOutcome,
        listed: Option<Result<Listing, String>>,
    ) {
        if let Some(listed) = listed {
            self.on_domains(listed);
        }
        let actions = self
            .host_apps
            .apps
            .engine
            .on_result(self.now(), id, outcome);
        self.perform_apps(actions);
    }
}
