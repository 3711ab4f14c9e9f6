//! Host maintenance, the operator's change: `hvctl host maintenance HOST on|off` is
//! refused or queued for the disk, and takes effect (and is answered) only once the new
//! state is written; a failed write, or one not done within the limit, changes nothing.
//! The driver writes the state file and moves the domains (evacuation, failback).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;

/// How long a change waits for its state to be on disk before it is called off.
pub const SAVE_LIMIT: Duration = Duration::from_secs(10);

/// This host's maintenance as it is written to disk (what survives a restart).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceState {
    /// In maintenance.
    pub on: bool,
    /// Domains moved away, and where.
    pub evacuated: Vec<(String, NodeId)>,
    /// Domains asked back.
    pub failback: Vec<String>,
}

impl MaintenanceState {
    /// The state `on` or `off` makes of this one; `comes_back` says which domains are
    /// configured to come back after a maintenance (failback).
    pub fn target(&self, on: bool, comes_back: impl Fn(&str) -> bool) -> MaintenanceState {
        if on {
            return MaintenanceState {
                on: true,
                failback: Vec::new(),
                // Asked again while in maintenance: what moved already stays recorded.
                evacuated: if self.on {
                    self.evacuated.clone()
                } else {
                    Vec::new()
                },
            };
        }
        MaintenanceState {
            on: false,
            failback: self
                .evacuated
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| comes_back(n))
                .collect(),
            evacuated: Vec::new(),
        }
    }
}

/// An operator's `on` or `off` waiting for its state to be on disk; `R` answers it.
#[derive(Debug)]
pub struct Change<R> {
    /// The save that carries it.
    pub seq: u64,
    /// What that save wrote.
    pub written: MaintenanceState,
    /// When it was asked.
    pub since: Duration,
    /// `on` (else `off`).
    pub on: bool,
    /// Who waits for the answer.
    pub reply: R,
}

/// What the operator asks, and what the refusal depends on.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The host named.
    pub host: &'a str,
    /// This host.
    pub own: &'a str,
    /// `on` (else `off`).
    pub on: bool,
    /// This host has a hypervisor (it runs domains).
    pub has_hypervisor: bool,
    /// This host is in maintenance now.
    pub in_maintenance: bool,
    /// The state file, for the wording.
    pub file: &'a str,
}

/// The change being saved, if any.
#[derive(Debug)]
pub struct MaintenanceCommand<R> {
    pending: Option<Change<R>>,
}

impl<R> Default for MaintenanceCommand<R> {
    fn default() -> Self {
        MaintenanceCommand { pending: None }
    }
}

impl<R> MaintenanceCommand<R> {
    /// Why `ask` is refused, or none: it may be saved.
    pub fn refusal(&self, ask: Ask<'_>) -> Option<String> {
        let Ask { host, own, .. } = ask;
        if host != own {
            Some(format!(
                "run it on {host} itself (this is {own}): the host in maintenance moves its \
                 own domains"
            ))
        } else if self.pending.is_some() {
            Some(format!(
                "a change of {own}'s maintenance is being written to {} already; try again \
                 in a moment",
                ask.file
            ))
        } else if ask.on && !ask.has_hypervisor {
            Some("this host has no [hypervisor] uri: it runs no domains".into())
        } else if !ask.on && !ask.in_maintenance {
            Some(format!("{own} is not in maintenance"))
        } else {
            None
        }
    }

    /// The change being saved.
    pub fn pending(&self) -> Option<&Change<R>> {
        self.pending.as_ref()
    }

    /// Save `seq` carries the change `on` asked at `now`, writing `written`.
    pub fn wait(&mut self, change: Change<R>) {
        self.pending = Some(change);
    }

    /// The state was written again (save `seq`, `written`) while the change waits: its
    /// answer waits for this write.
    pub fn rewritten(&mut self, seq: u64, written: MaintenanceState) {
        if let Some(p) = &mut self.pending {
            (p.seq, p.written) = (seq, written);
        }
    }

    /// Save `seq` ended with `result`: the change it completes (a later save completes
    /// an earlier one's wait too), with why it failed, if it did.
    pub fn saved(
        &mut self,
        seq: u64,
        result: Result<(), String>,
    ) -> Option<(Change<R>, Result<(), String>)> {
        let change = self.pending.take_if(|p| seq >= p.seq)?;
        Some((change, result))
    }

    /// The change, when its state was not on disk within [`SAVE_LIMIT`] at `now`.
    pub fn overdue(&mut self, now: Duration) -> Option<Change<R>> {
        self.pending
            .take_if(|p| now.saturating_sub(p.since) >= SAVE_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(on: bool, in_maintenance: bool) -> Ask<'static> {
        Ask {
            host: "h1",
            own: "h1",
            on,
            has_hypervisor: true,
            in_maintenance,
            file: "/var/lib/hvcluster/maintenance.json",
        }
    }

    fn change(seq: u64, since: u64) -> Change<&'static str> {
        Change {
            seq,
            written: MaintenanceState::default(),
            since: Duration::from_secs(since),
            on: true,
            reply: "operator",
        }
    }

    #[test]
    fn a_change_is_answered_only_by_the_save_that_carries_it() {
        let mut c = MaintenanceCommand::default();
        assert_eq!(c.refusal(ask(true, false)), None);
        c.wait(change(5, 0));
        assert!(c
            .refusal(ask(true, false))
            .unwrap()
            .contains("being written"));
        assert!(
            c.saved(4, Ok(())).is_none(),
            "an older save is not this change's"
        );
        c.rewritten(7, MaintenanceState::default());
        assert!(
            c.saved(5, Ok(())).is_none(),
            "written again: it waits for that write"
        );
        let (done, result) = c.saved(7, Err("disk full".into())).unwrap();
        assert_eq!((done.reply, result), ("operator", Err("disk full".into())));
        assert!(c.pending().is_none());
    }

    #[test]
    fn a_change_not_on_disk_in_time_is_called_off() {
        let mut c = MaintenanceCommand::default();
        c.wait(change(1, 100));
        assert!(c.overdue(Duration::from_secs(109)).is_none());
        assert!(c.overdue(Duration::from_secs(110)).is_some());
        assert!(c.saved(1, Ok(())).is_none(), "answered already");
    }

    #[test]
    fn refusals_name_what_to_do() {
        let c = MaintenanceCommand::<()>::default();
        let other = Ask {
            host: "h2",
            ..ask(true, false)
        };
        assert!(c.refusal(other).unwrap().contains("run it on h2 itself"));
        let no_hv = Ask {
            has_hypervisor: false,
            ..ask(true, false)
        };
        assert!(c.refusal(no_hv).unwrap().contains("no [hypervisor] uri"));
        assert!(c
            .refusal(ask(false, false))
            .unwrap()
            .contains("not in maintenance"));
        assert_eq!(c.refusal(ask(false, true)), None);
    }

    #[test]
    fn off_asks_back_only_the_domains_configured_to_come_back() {
        let on = MaintenanceState {
            on: true,
            evacuated: vec![("vm1".into(), 2), ("vm2".into(), 3)],
            failback: Vec::new(),
        };
        let off = on.target(false, |n| n == "vm2");
        assert_eq!(
            (off.on, off.failback, off.evacuated),
            (false, vec!["vm2".to_string()], vec![])
        );
        assert_eq!(
            on.target(true, |_| true).evacuated.len(),
            2,
            "on again keeps the record"
        );
        assert!(MaintenanceState::default()
            .target(true, |_| true)
            .evacuated
            .is_empty());
    }
}
