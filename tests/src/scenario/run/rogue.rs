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
