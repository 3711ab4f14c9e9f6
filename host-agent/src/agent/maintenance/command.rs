//! `hvctl host maintenance HOST on|off` as the operator gives it: the new state goes to
//! the state writer, and takes effect (and is answered) once it is on disk, as
//! `hvcluster_common::host::maintenance` decides.

use hvcluster_common::admin::Response;
use hvcluster_common::host::maintenance::{Ask, Change, SAVE_LIMIT};
use serde_json::json;
use tokio::sync::oneshot;

use super::Journal;
use crate::agent::Agent;

impl Agent {
    /// `hvctl host maintenance HOST on|off`: the new state is queued for the disk; the
    /// change takes effect, and `reply` is answered, once it is written.
    pub(in crate::agent) fn host_maintenance(
        &mut self,
        host: &str,
        on: bool,
        reply: oneshot::Sender<Response>,
    ) {
        let own = self.member.own_name.clone();
        let file = self.maintenance.file.display().to_string();
        let ask = Ask {
            host,
            own: &own,
            on,
            has_hypervisor: self.libvirt.is_some(),
            in_maintenance: self.maintenance.on(),
            file: &file,
        };
        if let Some(message) = self.maintenance.command.refusal(ask) {
            return self.maintenance_answer(on, reply, Err(message));
        }
        let written = self.maintenance_target(on);
        match self.saves.save_json(&self.maintenance.file, &written) {
            Ok(seq) => {
                let since = self.now();
                self.maintenance.command.wait(Change {
                    seq,
                    written,
                    since,
                    on,
                    reply,
                });
            }
            Err(why) => {
                self.maintenance_answer(on, reply, Err(format!("{why}; nothing was changed")))
            }
        }
    }

    /// Answers the operator's `on` or `off`, and records it.
    fn maintenance_answer(
        &mut self,
        on: bool,
        reply: oneshot::Sender<Response>,
        result: Result<String, String>,
    ) {
        let own = self.member.own_name.clone();
        let what = format!(
            "hvctl host maintenance {own} {}",
            if on { "on" } else { "off" }
        );
        let verdict = match &result {
            Ok(m) => format!("done: {m}"),
            Err(m) => format!("refused: {m}"),
        };
        self.member.events.record(
            Some(&own),
            "operator",
            format!("operator: {what}: {verdict}"),
            json!({ "command": what, "accepted": result.is_ok() }),
        );
        self.send_heartbeats();
        let _ = reply.send(match result {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Refused { message },
        });
    }

    /// The state writer wrote save `seq` of the maintenance file (or failed to).
    pub(in crate::agent) fn maintenance_saved(&mut self, seq: u64, result: Result<(), String>) {
        let Some((p, result)) = self.maintenance.command.saved(seq, result) else {
            return;
        };
        let outcome = match result {
            Ok(()) => {
                let message = if p.on {
                    self.maintenance_on()
                } else {
                    self.maintenance_off()
                };
                if self.maintenance.state != p.written {
                    // Changed meanwhile (a domain moved): written again.
                    self.maintenance_save_current();
                }
                Ok(message)
            }
            Err(why) => {
                // The old state goes back on disk, whatever this write left there.
                self.maintenance_save_current();
                Err(format!(
                    "{why}; nothing was changed (the maintenance state must be on disk first)"
                ))
            }
        };
        self.maintenance_answer(p.on, p.reply, outcome);
    }

    /// Refuses an `on` or `off` whose state is not on disk within the limit.
    pub(in crate::agent) fn maintenance_save_overdue(&mut self) {
        let now = self.now();
        let Some(p) = self.maintenance.command.overdue(now) else {
            return;
        };
        self.maintenance_save_current();
        let why = format!(
            "the maintenance state could not be written to {} within {} s (is the state \
             disk slow or blocked?); nothing was changed",
            self.maintenance.file.display(),
            SAVE_LIMIT.as_secs()
        );
        self.maintenance_answer(p.on, p.reply, Err(why));
    }

    /// The state `on` or `off` makes of the current one.
    pub(super) fn maintenance_target(&self, on: bool) -> Journal {
        let domains = &self.config.migration.domains;
        let comes_back = |n: &str| domains.iter().any(|d| d.name == n && d.failback);
        self.maintenance.state.target(on, comes_back)
    }

    /// Writes the state after a change that already happened (a domain moved, came
    /// back): memory follows what is true. With an `on` or `off` being saved, what is
    /// written includes it, and its answer waits for this write. A failed write is
    /// reported; the next change writes it all again.
    pub(super) fn maintenance_save_current(&mut self) {
        let state = match self.maintenance.command.pending() {
            Some(p) => self.maintenance_target(p.on),
            None => self.maintenance.state.clone(),
        };
        match self.saves.save_json(&self.maintenance.file, &state) {
            Ok(seq) => self.maintenance.command.rewritten(seq, state),
            Err(why) => tracing::error!(cause = %why, "cannot write the maintenance state"),
        }
    }
}
