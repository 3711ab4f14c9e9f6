//! Expectations on what the hosts see: host states, links, quorum, counters and events,
//! and how long a state change took.

use std::time::{Duration, Instant};

use super::{unix_us, Runner, POLL};
use crate::scenario::spec::Step;

impl Runner<'_> {
    /// Checks one expectation on the hosts' view (an `expect-*` step about hosts).
    pub(super) fn expect_host(&mut self, step: &Step) {
        match step {
            Step::ExpectState {
                observers,
                host,
                state,
                reason,
                within_ms,
                measure,
            } => {
                let text = format!(
                    "{} see {host} {state:?}{}",
                    observers.join(", "),
                    reason.map(|r| format!(" ({r:?})")).unwrap_or_default()
                );
                let res = self.wait_for(observers, Duration::from_millis(*within_ms), |s| {
                    s.hosts
                        .iter()
                        .any(|h| h.name == *host && state.matches(h.state, *reason))
                });
                if let (Ok(()), Some(phase)) = (&res, measure) {
                    match self.measure_state_change(observers, host, |s| state.matches(s, *reason))
                    {
                        Some(ms) => {
                            self.measures.insert(phase.clone(), ms);
                        }
                        None => self.check(
                            format!("{phase} measured from events"),
                            false,
                            "no matching event".into(),
                        ),
                    }
                }
                self.check(text, res.is_ok(), res.err().unwrap_or_default());
            }
            Step::ExpectStays {
                observers,
                host,
                state,
                for_ms,
            } => {
                let text = format!(
                    "{} see {host} {state:?} for {} s",
                    observers.join(", "),
                    *for_ms as f64 / 1000.0
                );
                let from_us = unix_us();
                let deadline = Instant::now() + Duration::from_millis(*for_ms);
                let mut res = Ok(());
                while Instant::now() < deadline && res.is_ok() {
                    res = self.wait_for(observers, Duration::ZERO, |s| {
                        s.hosts
                            .iter()
                            .any(|h| h.name == *host && state.matches(h.state, None))
                    });
                    std::thread::sleep(POLL);
                }
                if res.is_ok() {
                    let flaps: Vec<String> = self
                        .cluster
                        .events
                        .snapshot()
                        .into_iter()
                        .filter(|e| e.unix_us >= from_us && e.kind == "host_state")
                        .filter(|e| {
                            e.subject.as_deref() == Some(host) && observers.contains(&e.observer)
                        })
                        .map(|e| format!("{}: {}", e.observer, e.message))
                        .collect();
                    if !flaps.is_empty() {
                        res = Err(format!("state changed meanwhile: {}", flaps.join("; ")));
                    }
                }
                self.check(text, res.is_ok(), res.err().unwrap_or_default());
            }
            Step::ExpectLink {
                observers,
                host,
                interconnect,
                state,
                within_ms,
            } => {
                let text = format!(
                    "{} see link ic{interconnect} to {host} {state:?}",
                    observers.join(", ")
                );
                let res = self.wait_for(observers, Duration::from_millis(*within_ms), |s| {
                    s.hosts.iter().any(|h| {
                        h.name == *host
                            && h.links
                                .get(*interconnect)
                                .is_some_and(|l| state.matches(*l))
                    })
                });
                self.check(text, res.is_ok(), res.err().unwrap_or_default());
            }
            Step::ExpectQuorum {
                hosts,
                quorate,
                within_ms,
            } => {
                let text = format!(
                    "{} {} quorum",
                    hosts.join(", "),
                    if *quorate { "hold" } else { "report NO" }
                );
                let res = self.wait_for(hosts, Duration::from_millis(*within_ms), |s| {
                    s.quorum.quorate == *quorate
                });
                self.check(text, res.is_ok(), res.err().unwrap_or_default());
            }
            Step::ExpectCounter {
                host,
                counter,
                at_least,
                within_ms,
            } => {
                let text = format!("{host} counts {counter} >= {at_least}");
                let res = self.wait_for(
                    std::slice::from_ref(host),
                    Duration::from_millis(*within_ms),
                    |s| s.counters.get(counter).copied().unwrap_or(0) >= *at_least,
                );
                let seen = self
                    .cluster
                    .status(host)
                    .ok()
                    .and_then(|s| s.counters.get(counter).copied())
                    .unwrap_or(0);
                self.check(text, res.is_ok(), format!("{counter} = {seen}"));
            }
            Step::ExpectEvent {
                observers,
                kind,
                subject,
                message,
                within_ms,
            } => {
                let text = format!(
                    "{} record a {kind} event{}{}",
                    observers.join(", "),
                    subject
                        .as_ref()
                        .map(|s| format!(" about {s}"))
                        .unwrap_or_default(),
                    message
                        .as_ref()
                        .map(|m| format!(" saying {m:?}"))
                        .unwrap_or_default()
                );
                let since = self.last_fault_us;
                let deadline = Instant::now() + Duration::from_millis(*within_ms);
                let missing = loop {
                    let events = self.cluster.events.snapshot();
                    let missing: Vec<&String> = observers
                        .iter()
                        .filter(|o| {
                            !events.iter().any(|e| {
                                e.unix_us >= since
                                    && &e.observer == *o
                                    && e.kind == *kind
                                    && subject
                                        .as_ref()
                                        .is_none_or(|s| e.subject.as_ref() == Some(s))
                                    && message.as_ref().is_none_or(|m| e.message.contains(m))
                            })
                        })
                        .collect();
                    if missing.is_empty() || Instant::now() >= deadline {
                        break missing.into_iter().cloned().collect::<Vec<_>>();
                    }
                    std::thread::sleep(POLL);
                };
                let ok = missing.is_empty();
                self.check(text, ok, format!("not recorded by {}", missing.join(", ")));
            }
            Step::ExpectNoEvent {
                observers,
                kind,
                subject,
                for_ms,
            } => {
                std::thread::sleep(Duration::from_millis(*for_ms));
                let since = self.last_fault_us;
                let seen: Vec<String> = self
                    .cluster
                    .events
                    .snapshot()
                    .into_iter()
                    .filter(|e| {
                        e.unix_us >= since && e.kind == *kind && observers.contains(&e.observer)
                    })
                    .filter(|e| {
                        subject
                            .as_ref()
                            .is_none_or(|s| e.subject.as_ref() == Some(s))
                    })
                    .map(|e| format!("{}: {}", e.observer, e.message))
                    .collect();
                let text = format!(
                    "{} record no {kind} event{}",
                    observers.join(", "),
                    subject
                        .as_ref()
                        .map(|s| format!(" about {s}"))
                        .unwrap_or_default()
                );
                self.check(text, seen.is_empty(), seen.join("; "));
            }
            _ => unreachable!("not an expectation on the hosts: {step:?}"),
        }
    }

    /// Time from the last fault until the last of `observers` recorded a change of
    /// `host` into a state accepted by `pred`, in ms.
    fn measure_state_change(
        &self,
        observers: &[String],
        host: &str,
        pred: impl Fn(hvcluster_common::membership::HostState) -> bool,
    ) -> Option<f64> {
        self.search_events(|events| {
            let mut worst = 0u64;
            for o in observers {
                let at = events.iter().find(|e| {
                    e.unix_us >= self.last_fault_us
                        && &e.observer == o
                        && e.kind == "host_state"
                        && e.subject.as_deref() == Some(host)
                        && serde_json::from_value::<TransitionDetail>(e.detail.clone())
                            .is_ok_and(|d| pred(d.host_state.to))
                })?;
                worst = worst.max(at.unix_us);
            }
            Some((worst - self.last_fault_us) as f64 / 1000.0)
        })
    }
}

#[derive(serde::Deserialize)]
struct TransitionDetail {
    host_state: Transition,
}

#[derive(serde::Deserialize)]
struct Transition {
    to: hvcluster_common::membership::HostState,
}
