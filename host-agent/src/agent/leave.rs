//! The clean leave: at SIGTERM or `hvctl host leave`, the agent stops its host-side
//! applications (the loop waits for them, at most [`crate::apps::Apps::SHUTDOWN_LIMIT`]),
//! then says in its last heartbeats that it leaves, and exits. Its domains run on.

use std::time::Duration;

use hvcluster_common::admin::Response;
use serde_json::json;
use tokio::sync::oneshot;

use super::Agent;

/// Rounds of leaving heartbeats, on every interconnect, before the agent exits.
pub const LEAVE_ROUNDS: u32 = 3;
/// Between two rounds.
const LEAVE_SPACING: Duration = Duration::from_millis(50);

impl Agent {
    /// `hvctl host leave HOST`: only on HOST itself. The loop starts leaving at its next
    /// tick; the answer comes at once.
    pub(super) fn leave_command(&mut self, host: &str, reply: oneshot::Sender<Response>) {
        let own = self.member.own_name.clone();
        let answer = if host != own {
            Response::Refused {
                message: format!(
                    "this is {own}: run hvctl host leave {host} on {host} itself (a host \
                     leaves by stopping its own agent)"
                ),
            }
        } else {
            self.leave_requested = true;
            hvcluster_runtime::service::stopping("hvctl host leave");
            let apps = !self.apps_stopped();
            Response::Done {
                message: format!(
                    "{own} leaves the host cluster: {}then the other hosts are told and \
                     hold it Left (not fenced); hv-hostd exits. Its domains run on, \
                     unguarded until hv-hostd starts again",
                    if apps {
                        "stopping its host-side applications first (at most 15 min), "
                    } else {
                        ""
                    }
                ),
            }
        };
        let _ = reply.send(answer);
    }

    /// The loop was told to stop: the host-side applications are stopped first.
    pub(super) fn start_leaving(&mut self) {
        if !self.host_apps.apps.is_empty() {
            self.apps_shutdown();
        }
    }

    /// Whether nothing of the host-side applications runs here any more.
    pub(super) fn apps_stopped(&self) -> bool {
        self.host_apps.apps.is_empty() || self.host_apps.apps.engine.all_inactive()
    }

    /// Tells the other hosts that this one leaves, when nothing of its applications runs
    /// any more; otherwise says nothing, so that they take the silence for a failure
    /// and fence this host before starting elsewhere what may still run here.
    pub(super) async fn say_leave(&mut self) {
        let own = self.member.own_name.clone();
        if !self.apps_stopped() {
            self.member.events.record(
                Some(&own),
                "leave_withheld",
                format!(
                    "{own}: host-side applications did not stop within the limit: no leave is \
                     sent; the other hosts will take this host's silence for a failure and \
                     fence it"
                ),
                json!({}),
            );
            return;
        }
        let effects = self.core.leave(self.now());
        self.perform(effects);
        for _ in 1..LEAVE_ROUNDS {
            tokio::time::sleep(LEAVE_SPACING).await;
            self.send_heartbeats();
        }
    }
}
