//! The fencing steps of a scenario: DOWN with proof, BMC power, fence agent alone.

use std::time::Duration;

use super::Runner;

impl Runner<'_> {
    /// `expect-down`: every observer holds `host` DOWN with proof of kind `proof`.
    pub(super) fn expect_down(
        &mut self,
        observers: &[String],
        host: &String,
        proof: &Option<String>,
        within_ms: &u64,
        measure: &Option<String>,
    ) {
        let text = format!(
            "{} hold {host} DOWN{}",
            observers.join(", "),
            proof
                .as_ref()
                .map(|p| format!(" by {p}"))
                .unwrap_or_default()
        );
        let want = proof.as_ref().map(|p| p.replace('-', "_"));
        let res = self.wait_for(observers, Duration::from_millis(*within_ms), |s| {
            s.hosts.iter().any(|h| {
                h.name == *host
                    && h.fence
                        .as_ref()
                        .and_then(|f| f.down.as_ref())
                        .is_some_and(|d| {
                            let kind = match serde_json::to_value(&d.proof) {
                                Ok(serde_json::Value::String(k)) => k,
                                Ok(serde_json::Value::Object(m)) => {
                                    m.keys().next().cloned().unwrap_or_default()
                                }
                                _ => String::new(),
                            };
                            want.as_ref().is_none_or(|w| *w == kind)
                        })
            })
        });
        if let (Ok(()), Some(phase)) = (&res, measure) {
            let since = self.last_fault_us;
            let about = |e: &hvcluster_common::admin::EventRecord, kind: &str| {
                e.unix_us >= since && e.kind == kind && e.subject.as_deref() == Some(host.as_str())
            };
            let last_down = self.search_events(|events| {
                let times: Option<Vec<u64>> = observers
                    .iter()
                    .map(|o| {
                        events
                            .iter()
                            .find(|e| about(e, "host_down") && &e.observer == o)
                            .map(|e| e.unix_us)
                    })
                    .collect();
                times.and_then(|v| v.into_iter().max())
            });
            if let Some(last) = last_down {
                self.measures
                    .insert(phase.clone(), (last - since) as f64 / 1000.0);
            }
            // The fence phase: from the coordinator's decision to its proof.
            let fence = self.search_events(|events| {
                let start = events.iter().find(|e| about(e, "fence_started"))?;
                let done = events
                    .iter()
                    .find(|e| about(e, "host_down") && e.observer == start.observer)?;
                Some((done.unix_us - start.unix_us) as f64 / 1000.0)
            });
            if let Some(ms) = fence {
                self.measures.insert("fence".into(), ms);
            }
        }
        self.check(text, res.is_ok(), res.err().unwrap_or_default());
    }

    /// `time-fence-agent`: the real fence_ipmilan alone, timed.
    pub(super) fn time_fence_agent(
        &mut self,
        from: &str,
        target: &str,
        measure: &str,
    ) -> anyhow::Result<()> {
        let lab = &self.cluster.lab;
        let agent = std::path::Path::new(crate::lab::FENCE_IPMILAN);
        let timeout = Duration::from_secs(20);
        // Like the agent's run, against a host that is on: fence_ipmilan skips the
        // power command for a host already off.
        let on = lab.run_fence_agent(
            from,
            agent,
            &lab.fence_ipmilan_params(target, "on"),
            timeout,
        )?;
        anyhow::ensure!(
            on.succeeded(),
            "fence_ipmilan could not power {target} on: {}",
            on.stderr.trim()
        );
        let off = lab.run_fence_agent(
            from,
            agent,
            &lab.fence_ipmilan_params(target, "off"),
            timeout,
        )?;
        let status = lab.run_fence_agent(
            from,
            agent,
            &lab.fence_ipmilan_params(target, "status"),
            timeout,
        )?;
        let ok = off.succeeded() && status.reports_off();
        if ok {
            self.measures.insert(
                measure.to_string(),
                (off.elapsed + status.elapsed).as_secs_f64() * 1000.0,
            );
        }
        self.check(
            format!("fence_ipmilan alone powers {target} off and confirms OFF from {from}"),
            ok,
            format!(
                "off exit {:?}, status exit {:?}: {}",
                off.code,
                status.code,
                status.stderr.trim()
            ),
        );
        Ok(())
    }

    /// `expect-power`: the simulated BMC's power state.
    pub(super) fn expect_power(&mut self, host: &str, on: &bool) {
        let state = self.cluster.lab.bmc_power_state(host);
        let ok = state.as_ref().is_ok_and(|s| s == on);
        self.check(
            format!(
                "the BMC of {host} reports power {}",
                if *on { "on" } else { "off" }
            ),
            ok,
            format!("{state:?}"),
        );
    }
}
