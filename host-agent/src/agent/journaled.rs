//! The fencing journal's health as the host core reports it: a journal that cannot be
//! written is an alarm (event, counter, `hvctl status` line). State files found
//! unreadable at start are reported here too.

use serde_json::json;

use super::Agent;
use crate::fence::JournalHealth;

/// Records an event of each kind whose state file was unreadable at start (moved aside).
pub(super) fn report_state_problems<const N: usize>(
    events: &crate::events::EventLog,
    host: &str,
    problems: [(&str, Option<String>); N],
) {
    for (kind, problem) in problems {
        if let Some(problem) = problem {
            events.record(Some(host), kind, problem, json!({}));
        }
    }
}

impl Agent {
    /// The fencing journal's health changed: an alarm, or its end.
    pub(super) fn journal_health(&mut self, health: JournalHealth) {
        let own = self.member.own_name.clone();
        let path = self.fence.journal_path().display().to_string();
        match health {
            JournalHealth::Same => {}
            JournalHealth::Failing(why) => {
                tracing::error!(journal = %path, cause = %why, "the fencing journal cannot be written");
                self.member.events.record(
                    Some(&own),
                    "journal_failed",
                    format!(
                        "the fencing journal {path} cannot be written ({why}); a host fenced now \
                         is not DOWN, and nothing of it is recovered, until a write succeeds. \
                         Check the state directory's disk (free space, read-only mount, file \
                         attributes)"
                    ),
                    json!({ "journal": path, "cause": why }),
                );
            }
            JournalHealth::Recovered(failures) => {
                tracing::info!(journal = %path, failures, "the fencing journal is written again");
                self.member.events.record(
                    Some(&own),
                    "journal_recovered",
                    format!("the fencing journal {path} is written again, after {failures} failed write(s)"),
                    json!({ "journal": path, "failures": failures }),
                );
            }
        }
    }

    /// The `hvctl status` line of a journal that cannot be written, while it cannot.
    pub(super) fn journal_alarm(&self) -> Option<String> {
        let (why, failures) = self.core.fencing().journal_problem()?;
        let waiting: Vec<String> = self
            .core
            .fencing()
            .machine()
            .journaling()
            .iter()
            .map(|(r, _)| self.name(r.target))
            .collect();
        let held = if waiting.is_empty() {
            String::new()
        } else {
            format!("; not yet DOWN for want of it: {}", waiting.join(", "))
        };
        Some(format!(
            "{} cannot be written ({why}; {failures} failed write(s) in a row){held}",
            self.fence.journal_path().display()
        ))
    }
}
