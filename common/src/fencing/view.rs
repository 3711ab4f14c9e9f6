//! What fencing decides on: the membership's facts, taken at each tick.

use std::time::Duration;

use crate::config::NodeId;
use crate::membership::{HostState, Membership};

/// The membership facts fencing decides on, taken at each tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Whether this host's partition is quorate.
    pub quorate: bool,
    /// Every other host: state, incarnation (0 if never heard), panic notice seen.
    pub peers: Vec<PeerFacts>,
    /// How long ago this host itself was stalled (frozen, starved), if ever.
    pub stalled_ago: Option<Duration>,
}

impl View {
    /// What `membership` says at `now`.
    pub fn of(membership: &Membership, now: Duration) -> View {
        let accusers = membership.accusers();
        View {
            quorate: membership.quorum().quorate,
            stalled_ago: membership.stalled_ago(now),
            peers: membership
                .peers(now)
                .iter()
                .map(|p| PeerFacts {
                    node: p.node,
                    state: p.state,
                    incarnation: p.incarnation.unwrap_or(0),
                    latest: membership.latest_incarnation(p.node).unwrap_or(0),
                    panic_noticed: p.panic_noticed,
                    must_rejoin: p.must_rejoin,
                    accuses_me: accusers.contains(&p.node),
                    // Unconfirmed frames count too: a host that booted again after a
                    // panic is heard so before it hears this host.
                    silent_long: !membership.heard_within(
                        p.node,
                        now,
                        membership.config().suspect_after,
                    ),
                })
                .collect(),
        }
    }
}

/// One peer as membership sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFacts {
    /// The host.
    pub node: NodeId,
    /// Its state.
    pub state: HostState,
    /// Its incarnation, 0 if never heard.
    pub incarnation: u64,
    /// The latest incarnation of it heard, confirmed or not (0 if none): a DOWN proved
    /// now ends that life too, and a DOWN record of an earlier one is stale.
    pub latest: u64,
    /// A kdump panic notice arrived from it.
    pub panic_noticed: bool,
    /// Failed, but heard again (so not off).
    pub must_rejoin: bool,
    /// Heard, and its heartbeats declare this host Failed: a one-way partition.
    pub accuses_me: bool,
    /// Nothing heard from it on any interconnect for at least the suspect time (or never),
    /// confirmed or not.
    pub silent_long: bool,
}

impl PeerFacts {
    /// Whether a panic notice proves it down: one was taken (unanswered by its agent),
    /// the host is Failed, not heard since, and silent for at least the suspect time. A
    /// notice is not authenticated, so any sign of life outvotes it, and a live agent
    /// that merely stalled past the probe bound is not taken for a crashed one.
    pub fn kdump_proof(&self) -> bool {
        self.panic_noticed
            && matches!(self.state, HostState::Failed(_))
            && !self.must_rejoin
            && self.silent_long
    }
}
