//! `hvctl host maintenance HOST on|off` as the operator gives it: the new state goes to
//! the state writer, and takes effect (and is answered) once it is on disk.

use std::time::Instant;

use hvcluster_common::admin::Response;
use serde_json::json;
use tokio::sync::oneshot;

use super::{Journal, Pending};
use crate::agent::saves::SAVE_LIMIT;
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
        let refusal = if host != own {
            Some(format!(
                "run it on {host} itself (this is {own}): the host in maintenance moves its \
                 own domains"
            ))
        } else if self.maintenance.pending.is_some() {
            Some(format!(
                "a change of {own}'s maintenance is being written to {} already; try again \
                 in a moment",
                self.maintenance.file.display()
            ))
        } else if on && self.libvirt.is_none() {
            Some("this host has no [hypervisor] uri: it runs no domains".into())
        } else if !on && !self.maintenance.on() {
            Some(format!("{own} is not in maintenance"))
        } else {
            None
        };
        if let Some(message) = refusal {
            return self.maintenance_answer(on, reply, Err(message));
        }
        let written = self.maintenance_target(on);
        match self.saves.save_json(&self.maintenance.file, &written) {
            Ok(seq) => {
                self.maintenance.pending = Some(Pending {
                    seq,
                    written,
                    since: Instant::now(),
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
        let Some(p) = self.maintenance.pending.take_if(|p| seq >= p.seq) else {
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
        let overdue = |p: &mut Pending| p.since.elapsed() >= SAVE_LIMIT;
        let Some(p) = self.maintenance.pending.take_if(overdue) else {
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
        let state = &self.maintenance.state;
        if on {
            return Journal {
                on: true,
                failback: Vec::new(),
                // Asked again while in maintenance: what moved already stays recorded.
                evacuated: if state.on {
                    state.evacuated.clone()
                } else {
                    Vec::new()
                },
            };
        }
        let failback = |n: &String| {
            let domains = &self.config.migration.domains;
            domains.iter().any(|d| &d.name == n && d.failback)
        };
        Journal {
            on: false,
            failback: state
                .evacuated
                .iter()
                .map(|(n, _)| n.clone())
                .filter(failback)
                .collect(),
            evacuated: Vec::new(),
        }
    }

    /// Writes the state after a change that already happened (a domain moved, came
    /// back): memory follows what is true. With an `on` or `off` being saved, what is
    /// written includes it, and its answer waits for this write. A failed write is
    /// reported; the next change writes it all again.
    pub(super) fn maintenance_save_current(&mut self) {
        let state = match &self.maintenance.pending {
            Some(p) => self.maintenance_target(p.on),
            None => self.maintenance.state.clone(),
        };
        match self.saves.save_json(&self.maintenance.file, &state) {
            Ok(seq) => {
                if let Some(p) = &mut self.maintenance.pending {
                    (p.seq, p.written) = (seq, state);
                }
            }
            Err(why) => tracing::error!(cause = %why, "cannot write the maintenance state"),
        }
    }
}
