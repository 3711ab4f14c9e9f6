//! The key-file steps of a scenario: an agent that must refuse to start.

use std::time::Duration;

use super::Runner;

impl Runner<'_> {
    /// `start-refused`: the agent of `agent` exits with a failure and says `output`.
    pub(super) fn start_refused(&mut self, agent: &str, output: &str, within: Duration) {
        self.note(format!("agent of {agent} started (it must refuse)"));
        let want = format!("the agent of {agent} refuses to start, saying {output:?}");
        match self.cluster.start_refused(agent, within) {
            Ok(said) => {
                let last = said.lines().last().unwrap_or_default().to_string();
                self.note(format!("{agent} said: {last}"));
                let ok = said.contains(output);
                self.check(want, ok, said);
            }
            Err(e) => self.check(want, false, format!("{e:#}")),
        }
    }
}
