//! Steps `link-flood` and `await-link-flood`.

use std::time::Duration;

use anyhow::Context;

use super::Runner;
use crate::scenario::slowloris::Flood;

impl Runner<'_> {
    /// Starts the flood of never-registering host-link connections from `via`.
    pub(super) fn link_flood(
        &mut self,
        via: &str,
        connections: u32,
        byte_every_ms: u64,
        for_ms: u64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.link_flood.is_none(),
            "link-flood: another runs (await-link-flood first)"
        );
        self.fault(format!(
            "from {via}: {connections} host-link connections that never register, \
             a byte every {byte_every_ms} ms, for {for_ms} ms"
        ));
        self.link_flood = Some(Flood::start(
            self.cluster,
            via,
            connections,
            Duration::from_millis(byte_every_ms),
            Duration::from_millis(for_ms),
        )?);
        Ok(())
    }

    /// Waits for the flood to end and checks how its connections ended.
    pub(super) fn await_link_flood(
        &mut self,
        min_refused: u32,
        max_held: Option<u32>,
        within_ms: u64,
    ) -> anyhow::Result<()> {
        let flood = self
            .link_flood
            .take()
            .context("await-link-flood: no link-flood runs")?;
        let report = flood.join(Duration::from_millis(within_ms))?;
        self.note(format!("link flood: {report}"));
        self.check(
            format!("at least {min_refused} flood connections refused at once"),
            report.refused >= min_refused,
            report.to_string(),
        );
        if let Some(max) = max_held {
            self.check(
                format!("at most {max} flood connections held to the end"),
                report.held <= max,
                report.to_string(),
            );
        }
        Ok(())
    }
}
