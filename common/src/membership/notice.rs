//! Panic notices. A fence_kdump notice carries no authentication: anyone who can send a
//! datagram with a host's source address can forge one. So a notice may hasten a verdict,
//! never outvote authenticated evidence of life:
//!
//! - A notice from one of a host's addresses starts a judgment ([`MembershipEvent::PanicNotice`]):
//!   this host sends its heartbeats at once, on every interconnect, asking the named host
//!   to answer (`Heartbeat::probe`). A live agent answers with heartbeats of its own.
//! - Any authenticated heartbeat of that host received after the notice refutes it
//!   ([`MembershipEvent::PanicNoticeRefuted`]), before or after the verdict.
//! - With nothing from it for the probe bound after the probe, the notice counts: the host
//!   is Failed (panic) unless it is Failed already, and the notice stands as the evidence
//!   a `kdump` fence level asks for, for as long as the host stays silent.
//!
//! - A notice that arrives within [`NEW_LIFE_GRACE`] of the first heartbeat of the host's
//!   current life is about an earlier life (a crash kernel boots for seconds before it
//!   sends anything, so the new life cannot have sent it): it is refuted at once. The
//!   earlier life is over; the new one stays judged by its own heartbeats.
//!
//! A host is probed at most once per bound, so forged notices cannot make the cluster
//! send more than a few heartbeats a second.

use std::time::Duration;

use super::{Action, FailReason, HostState, Membership, MembershipEvent};
use crate::config::NodeId;

/// Default time a host named by a panic notice has to answer the probe (`[kdump] probe_ms`).
pub const DEFAULT_PANIC_PROBE: Duration = Duration::from_millis(150);

/// A panic notice this soon after a host's current life was first heard is a late one of
/// its earlier life: no crash kernel boots and sends a notice this quickly.
pub const NEW_LIFE_GRACE: Duration = Duration::from_secs(2);

impl Membership {
    /// Sets how long a host named by a panic notice has to answer before the notice counts.
    pub fn set_panic_probe(&mut self, bound: Duration) {
        self.panic_probe = bound;
    }

    /// Handles a kdump panic notice that arrived at `now` from one of `node`'s addresses:
    /// starts a judgment (a probe) unless one is running or the notice already counts.
    pub fn on_kdump_notice(&mut self, now: Duration, node: NodeId) -> Vec<Action> {
        let mut out = Vec::new();
        let bound = self.panic_probe;
        let Some(peer) = self.peers.iter_mut().find(|p| p.id == node) else {
            return out;
        };
        if peer.notice_at.is_some() {
            return out;
        }
        if peer
            .life_since
            .is_some_and(|t| now.saturating_sub(t) < NEW_LIFE_GRACE)
        {
            out.push(Action::Event(MembershipEvent::PanicNoticeRefuted { node }));
            return out;
        }
        peer.notice_at = Some(now);
        out.push(Action::Event(MembershipEvent::PanicNotice {
            node,
            probe_ms: bound.as_millis() as u64,
        }));
        if peer.probed_at.is_none_or(|p| now >= p + bound) {
            peer.probed_at = Some(now);
            out.push(Action::SendHeartbeats);
        }
        out
    }

    /// Handles an authenticated notice that `node` died (a host's word that it is down, or
    /// that it destroyed it): Failed (panic) at once, and it must rejoin to count again.
    pub fn on_panic_notice(&mut self, now: Duration, node: NodeId) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == node) {
            peer.panic_noticed = true;
            if !matches!(peer.state, HostState::Failed(_)) {
                peer.set_state(now, HostState::Failed(FailReason::Panic), &mut out);
            }
        }
        self.update_quorum(&mut out);
        out
    }

    /// Hosts this host is probing because a panic notice named them.
    pub(super) fn probed(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|p| p.notice_at.is_some() && !p.panic_noticed)
            .map(|p| p.id)
            .collect()
    }

    /// Probes what is due and gives the verdict on notices whose bound passed in silence.
    pub(super) fn judge_notices(&mut self, now: Duration, out: &mut Vec<Action>) {
        let bound = self.panic_probe;
        let mut probe = false;
        for peer in &mut self.peers {
            let Some(at) = peer.notice_at.filter(|_| !peer.panic_noticed) else {
                continue;
            };
            match peer.probed_at {
                // Probed since the notice: the bound runs from that probe.
                Some(p) if p >= at => {
                    if now >= p + bound {
                        peer.panic_noticed = true;
                        if !matches!(peer.state, HostState::Failed(_)) {
                            peer.set_state(now, HostState::Failed(FailReason::Panic), out);
                        }
                    }
                }
                // The last probe came before this notice: probe again once one is allowed.
                last => {
                    if last.is_none_or(|p| now >= p + bound) {
                        peer.probed_at = Some(now);
                        probe = true;
                    }
                }
            }
        }
        if probe && !out.contains(&Action::SendHeartbeats) {
            out.push(Action::SendHeartbeats);
        }
    }
}
