//! The agent as a systemd service (`Type=notify`): readiness, a status line that says
//! what the agent waits for, and the watchdog, all driven by the agent's driver loop so
//! that systemd hears `WATCHDOG=1` only while that loop really runs. Outside systemd
//! (no `NOTIFY_SOCKET`) every call here does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hvcluster_common::membership::HostState;
use hvcluster_common::quorum::QuorumState;
use sd_notify::NotifyState;

/// How often the status line is recomputed at most.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Set once the agent stops: the status line then stays "stopping".
static STOPPING: AtomicBool = AtomicBool::new(false);

/// What the agent tells systemd, and when it last did.
#[derive(Debug)]
pub struct Service {
    /// `NOTIFY_SOCKET` is set: systemd listens.
    notify: bool,
    /// How often `WATCHDOG=1` is sent: a quarter of `WATCHDOG_USEC`, when set for us.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    ready: bool,
    status: String,
    next_status: Option<Instant>,
    /// A send failed and was logged; later failures are not.
    send_failed: bool,
}

impl Service {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let ping_every = sd_notify::watchdog_enabled().map(|usec| (usec / 4).max(MIN_PING));
        Service {
            notify: std::env::var_os("NOTIFY_SOCKET").is_some(),
            ping_every,
            next_ping: None,
            ready: false,
            status: String::new(),
            next_status: None,
            send_failed: false,
        }
    }

    /// Called by the driver loop at each of its ticks: the first call says `READY=1`
    /// with the first status line; then `WATCHDOG=1` whenever a quarter of the
    /// watchdog time has passed, and `STATUS=` whenever `status` (asked at most once a
    /// second) says something new.
    pub fn alive(&mut self, now: Instant, status: impl FnOnce() -> String) {
        if !self.notify {
            return;
        }
        let mut text = None;
        if self.next_status.is_none_or(|at| now >= at) && !STOPPING.load(Ordering::Relaxed) {
            self.next_status = Some(now + STATUS_EVERY);
            let line = status();
            if line != self.status {
                self.status = line;
                text = Some(self.status.as_str());
            }
        }
        let mut states: Vec<NotifyState<'_>> = Vec::with_capacity(3);
        if !self.ready {
            self.ready = true;
            states.push(NotifyState::Ready);
        }
        if let Some(every) = self.ping_every {
            if self.next_ping.is_none_or(|at| now >= at) {
                self.next_ping = Some(now + every);
                states.push(NotifyState::Watchdog);
            }
        }
        if let Some(t) = text {
            states.push(NotifyState::Status(t));
        }
        if states.is_empty() {
            return;
        }
        if let Err(e) = sd_notify::notify(&states) {
            if !std::mem::replace(&mut self.send_failed, true) {
                tracing::warn!(cause = %e, "cannot notify systemd (NOTIFY_SOCKET); the service's watchdog may restart the agent");
            }
        }
    }
}

/// The smallest watchdog ping period: the driver loop ticks at most every 50 ms.
const MIN_PING: Duration = Duration::from_millis(50);

/// Tells systemd the agent is stopping (`STOPPING=1`) and why; later status lines are
/// not sent, the watchdog still is.
pub fn stopping(why: &str) {
    STOPPING.store(true, Ordering::Relaxed);
    let status = format!("stopping: {why}");
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// The status line of a member: its quorum and which members it waits for or has
/// lost. `member` is what the configuration calls one (`host`, `node`), `peers` the
/// others' names and states.
pub fn status_line(member: &str, quorum: QuorumState, peers: &[(String, HostState)]) -> String {
    let mut parts = Vec::new();
    let votes = format!("{} votes, {} needed", quorum.votes, quorum.needed);
    parts.push(if quorum.quorate {
        format!("quorate ({votes})")
    } else if quorum.waiting_for_all {
        format!("waiting to see every {member} once (wait_for_all; {votes})")
    } else {
        format!("waiting for quorum ({votes})")
    });
    let names = |pick: fn(HostState) -> bool| {
        peers
            .iter()
            .filter(|(_, s)| pick(*s))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
    };
    let waiting = names(|s| matches!(s, HostState::Unknown | HostState::Joining));
    let suspect = names(|s| matches!(s, HostState::Suspect));
    let failed = names(|s| matches!(s, HostState::Failed(_)));
    let left = names(|s| matches!(s, HostState::Left));
    if !waiting.is_empty() {
        parts.push(format!(
            "waiting for heartbeats from {}",
            waiting.join(", ")
        ));
    }
    if !suspect.is_empty() {
        parts.push(format!("suspect: {}", suspect.join(", ")));
    }
    if !failed.is_empty() {
        parts.push(format!("failed: {}", failed.join(", ")));
    }
    if !left.is_empty() {
        parts.push(format!("left: {}", left.join(", ")));
    }
    if waiting.is_empty() && suspect.is_empty() && failed.is_empty() && left.is_empty() {
        parts.push(format!("all {} other {member}s up", peers.len()));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvcluster_common::membership::FailReason;

    fn quorum(quorate: bool, votes: u32, needed: u32, waiting_for_all: bool) -> QuorumState {
        QuorumState {
            quorate,
            votes,
            needed,
            waiting_for_all,
        }
    }

    /// Inputs and the line systemd shows, side by side.
    #[test]
    fn the_status_line_says_what_the_member_waits_for() {
        let p = |n: &str, s| (n.to_string(), s);
        let cases = [
            (
                quorum(false, 1, 2, true),
                vec![p("b", HostState::Unknown), p("c", HostState::Joining)],
                "waiting to see every host once (wait_for_all; 1 votes, 2 needed); waiting for heartbeats from b, c",
            ),
            (
                quorum(true, 3, 2, false),
                vec![p("b", HostState::Up), p("c", HostState::Up)],
                "quorate (3 votes, 2 needed); all 2 other hosts up",
            ),
            (
                quorum(true, 2, 2, false),
                vec![p("b", HostState::Suspect), p("c", HostState::Failed(FailReason::Silent))],
                "quorate (2 votes, 2 needed); suspect: b; failed: c",
            ),
            (
                quorum(false, 1, 2, false),
                vec![p("b", HostState::Failed(FailReason::Panic))],
                "waiting for quorum (1 votes, 2 needed); failed: b",
            ),
        ];
        for (q, peers, want) in cases {
            assert_eq!(status_line("host", q, &peers), want);
        }
    }
}
