//! Steps of a hostile guest on the host link.

use super::Runner;

impl Runner<'_> {
    /// `foreign-claim`: the claim is refused, and so is the kill asked afterwards.
    pub(super) fn foreign_claim(
        &mut self,
        via: &str,
        claim: &crate::rogue::Claim,
        then_kill: Option<u32>,
    ) -> anyhow::Result<()> {
        let who = format!(
            "{} (node {}){}",
            claim.node,
            claim.node_id,
            claim
                .domain
                .as_ref()
                .map(|d| format!(" in domain {d}"))
                .unwrap_or_default()
        );
        self.fault(format!(
            "on {via}'s network, a guest of {} guest cluster registers as {who}",
            if claim.stranger {
                "the stranger"
            } else {
                "the lab's"
            }
        ));
        let (refused, killed) = self.cluster.foreign_claim(via, claim, then_kill)?;
        self.check(
            format!("the registration as {who} is refused"),
            refused.is_some(),
            "the host registered it".into(),
        );
        if let Some(reason) = refused {
            self.note(format!("refused: {reason}"));
        }
        if let (Some(target), Some((ok, detail))) = (then_kill, killed) {
            self.check(
                format!("the kill of node {target} asked afterwards is refused"),
                !ok,
                format!("the host agreed: {detail}"),
            );
            self.note(format!("kill answer: {detail}"));
        }
        Ok(())
    }
}

impl Runner<'_> {
    /// `kill-flood`: floods, then notes what it did.
    pub(super) fn kill_flood(
        &mut self,
        via: &str,
        target: &str,
        length: std::time::Duration,
    ) -> anyhow::Result<()> {
        self.fault(format!(
            "{via} asks its host to kill {target} as fast as it can for {} s",
            length.as_secs()
        ));
        let node_id: u32 = target.trim_start_matches('g').parse()?;
        let stats = self.cluster.kill_flood(via, node_id, length)?;
        let rate = stats.sent as f64 / length.as_secs_f64().max(0.001);
        self.note(format!(
            "flood over: {} requests ({rate:.0}/s), {} results ({} ok), {} reconnections",
            stats.sent, stats.results, stats.ok, stats.reconnects
        ));
        self.measures.insert("kill_requests_per_s".into(), rate);
        self.check(
            format!("{via} sent kill requests all along"),
            stats.sent > 0,
            format!("{stats:?}"),
        );
        Ok(())
    }

    /// `expect-event-count`: at most `at_most` events of `kind` per observer since the
    /// last fault.
    pub(super) fn expect_event_count(&mut self, observers: &[String], kind: &str, at_most: usize) {
        let since = self.last_fault_us;
        let events = self.cluster.events.snapshot();
        let mut over = Vec::new();
        for o in observers {
            let n = events
                .iter()
                .filter(|e| e.unix_us >= since && e.kind == kind && &e.observer == o)
                .count();
            if n > at_most {
                over.push(format!("{o}: {n}"));
            }
        }
        self.check(
            format!(
                "{} record at most {at_most} {kind} event(s)",
                observers.join(", ")
            ),
            over.is_empty(),
            over.join("; "),
        );
    }
}
