//! The clean leave, this host's side, and the quorum rules it downscales (see the
//! module's "Leave").

use super::{Action, HostState, Membership};
use crate::quorum::QuorumRules;

impl Membership {
    /// This host leaves the cluster: its heartbeats say so from now on. The driver sends
    /// them a few times on every interconnect and stops; its peers then hold it Left.
    pub fn leave(&mut self) -> Vec<Action> {
        self.leaving = true;
        vec![Action::SendHeartbeats]
    }

    /// Whether this host said it leaves.
    pub fn leaving(&self) -> bool {
        self.leaving
    }

    /// The vote rules with the votes of the Left peers taken out of the expected ones
    /// (corosync's allow_downscale): a clean leave does not cost the others quorum.
    pub fn rules(&self) -> QuorumRules {
        let left = self
            .peers
            .iter()
            .filter(|p| p.state == HostState::Left)
            .count() as u32;
        self.cfg.quorum.downscaled(left)
    }
}
