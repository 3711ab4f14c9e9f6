//! The membership failure detector, as a pure state machine.
//!
//! The driver feeds it authenticated heartbeats, panic notices and ticks, each with the
//! current time (an arbitrary monotonic origin), and performs the [`Action`]s it returns.
//! It keeps, per peer host, the state of every interconnect link and of the host:
//!
//! ```text
//!  Unknown --heard--> Joining --n heartbeats--> Up --silent suspect_after--> Suspect
//!                        ^                      ^ \__________heard__________/   |
//!                        |                      |                                | silent dead_after,
//!                        +--- new incarnation --+-- Failed(silent|panic|hung) <--+ panic notice left
//!                        |                                                         unanswered, hung
//!                        +--- new incarnation ---- Left <-- its leave (from any state but Failed)
//! ```
//!
//! **Leave.** A host whose agent stops cleanly says so in its last heartbeats
//! ([`Heartbeat::leaving`]): authenticated, for its current incarnation, through the
//! replay window and fresh like any heartbeat, so a recorded leave of an earlier life
//! is refused with that life. Its peers hold it Left: not counted, its vote taken out
//! of the expected ones ([`Membership::rules`]), never failed for its silence, so never
//! fenced nor DOWN. Its heartbeats in that same incarnation change nothing (a left agent
//! does not come back without a new incarnation: incarnations are on disk); a new one
//! joins through Joining as any start, and its vote is expected again.
//!
//! A Failed host that is heard again with the same incarnation (a frozen host thawed, an
//! isolated one reconnected) is not taken back: it is flagged `must_rejoin`, and the
//! heartbeats of the quorate side tell it that it was declared failed. The host then
//! starts a new incarnation ([`Action::Rejoin`]), which its peers accept through Joining.
//!
//! **Freshness.** A heartbeat is evidence of its sender's life only when it was made
//! after this host's current incarnation began: every heartbeat names, for each host,
//! the incarnation its sender last heard from it, and one that does not name this host's
//! current incarnation is *unconfirmed* ([`Membership::is_fresh`]). It only tells its
//! incarnation, which this host's own heartbeats then name back: a live peer confirms
//! itself one heartbeat later, while a recording made before this host started (or
//! rejoined), replayed to it, never does. The replay window cannot tell: a restarted
//! receiver has no memory of the frames it saw before. A peer heard only unconfirmed is
//! not taken for silent either (it may be alive and not hear this host): it stays
//! Unknown, neither counted nor fenced by this host, until it confirms or falls silent.

mod config;
#[cfg(test)]
mod freshness_tests;
mod heartbeat;
mod leave;
mod notice;
mod peer;
pub mod section;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::quorum::QuorumState;
use crate::wire::Accepted;

pub use config::MembershipConfig;
pub use heartbeat::{Heartbeat, PeerView, Section, WatchdogVerdict, HEADER_VERSION};
pub use notice::{DEFAULT_PANIC_PROBE, NEW_LIFE_GRACE};
use peer::Peer;
pub use peer::{LinkState, PeerStatus};

/// Why a host is Failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// No heartbeat on any interconnect for the dead time.
    Silent,
    /// A kdump panic notice arrived from one of its addresses and nothing authenticated
    /// came from it within the probe bound after.
    Panic,
    /// It reported itself hung for longer than the limit.
    Hung,
}

/// A peer host's state in this host's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Not heard since this agent started.
    Unknown,
    /// Heard, not yet for long enough to count.
    Joining,
    /// Alive and counted for quorum.
    Up,
    /// Silent for longer than `suspect_after_ms`; still counted.
    Suspect,
    /// Considered dead, with the reason.
    Failed(FailReason),
    /// Said, in its current incarnation, that it leaves (its agent stops cleanly): not
    /// counted, its votes taken out of the expected ones, never failed for its silence
    /// and so never fenced. Heard again in a new incarnation, it joins as any start.
    Left,
}

impl HostState {
    /// Whether the host counts as present for quorum.
    pub fn present(self) -> bool {
        matches!(self, HostState::Up | HostState::Suspect)
    }
}

/// Something that happened to the membership, for logs, status and the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipEvent {
    /// A host changed state.
    HostState {
        /// The host.
        node: NodeId,
        /// Previous state.
        from: HostState,
        /// New state.
        to: HostState,
    },
    /// An interconnect link to a host came up or went down.
    Link {
        /// The host at the other end.
        node: NodeId,
        /// Interconnect index.
        interconnect: usize,
        /// New state.
        state: LinkState,
    },
    /// This partition's quorum changed.
    Quorum(QuorumState),
    /// A host's agent restarted.
    Incarnation {
        /// The host.
        node: NodeId,
        /// Incarnation seen before.
        previous: u64,
        /// The new incarnation.
        current: u64,
    },
    /// A Failed host was heard again without restarting; it must rejoin.
    MustRejoin {
        /// The host.
        node: NodeId,
    },
    /// A host's configuration differs from ours; its heartbeats are refused.
    ConfigMismatch {
        /// The host.
        node: NodeId,
    },
    /// This host itself did not run for a while (frozen, starved); peers' silence
    /// during that time is not held against them.
    Stalled {
        /// How long this host did not tick, ms.
        for_ms: u64,
    },
    /// The quorate side declared this host failed; it rejoins with a new incarnation.
    Expelled {
        /// The host whose heartbeat said so.
        by: NodeId,
    },
    /// A panic notice named a host: it is probed, and the notice counts only if nothing
    /// authenticated arrives from it within `probe_ms`.
    PanicNotice {
        /// The host.
        node: NodeId,
        /// The bound, ms.
        probe_ms: u64,
    },
    /// An authenticated heartbeat arrived from a host after a panic notice named it: the
    /// notice is disregarded.
    PanicNoticeRefuted {
        /// The host.
        node: NodeId,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat ([`Membership::heartbeat`]) to every peer on every interconnect.
    SendHeartbeats,
    /// Report this event.
    Event(MembershipEvent),
    /// Start a new incarnation and call [`Membership::rejoin`] with it.
    Rejoin,
}

/// The membership state machine of one host.
#[derive(Debug)]
pub struct Membership {
    cfg: MembershipConfig,
    incarnation: u64,
    peers: Vec<Peer>,
    watchdog: WatchdogVerdict,
    quorum: QuorumState,
    next_heartbeat: Duration,
    last_tick: Option<Duration>,
    stalled_at: Option<Duration>,
    domains_version: u64,
    panic_probe: Duration,
    leaving: bool,
}

impl Membership {
    /// A machine for `cfg.me`, started at `now` with `incarnation`.
    pub fn new(cfg: MembershipConfig, incarnation: u64, now: Duration) -> Self {
        let peers = cfg
            .hosts
            .iter()
            .filter(|h| h.0 != cfg.me)
            .map(|h| Peer::new(h.0, cfg.interconnects, now))
            .collect();
        let quorum = cfg.quorum.evaluate(1, cfg.hosts.len() <= 1);
        Membership {
            cfg,
            incarnation,
            peers,
            watchdog: WatchdogVerdict::Ok,
            quorum,
            next_heartbeat: now,
            last_tick: None,
            stalled_at: None,
            domains_version: 0,
            panic_probe: DEFAULT_PANIC_PROBE,
            leaving: false,
        }
    }

    /// This host's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// This partition's quorum.
    pub fn quorum(&self) -> QuorumState {
        self.quorum
    }

    /// This host's node id.
    pub fn me(&self) -> NodeId {
        self.cfg.me
    }

    /// The machine's configuration.
    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    /// Relaxes the failure detection of `node` until `until` (None: back to normal): its
    /// silence makes it Suspect but not Failed meanwhile. For a guest paused by a
    /// migration, for the expected pause; a silence that outlasts it is judged as usual.
    pub fn relax(&mut self, node: NodeId, until: Option<Duration>) {
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == node) {
            peer.relaxed_until = until;
        }
    }

    /// Records this host's own load-watchdog verdict for the next heartbeats.
    pub fn set_watchdog(&mut self, verdict: WatchdogVerdict) {
        self.watchdog = verdict;
    }

    /// This host's own load-watchdog verdict.
    pub fn watchdog(&self) -> WatchdogVerdict {
        self.watchdog
    }

    /// State of `node` in this host's view (`None` for unknown ids and for itself).
    pub fn state_of(&self, node: NodeId) -> Option<HostState> {
        self.peer(node).map(|p| p.state)
    }

    /// The latest incarnation of `node` this host heard, confirmed or not (an
    /// authenticated frame of an incarnation shows that it started, replayed or not).
    pub fn latest_incarnation(&self, node: NodeId) -> Option<u64> {
        self.peer(node).and_then(|p| p.echo.max(p.incarnation))
    }

    /// Whether `node` was heard, confirmed or not, within the dead time before `now`.
    pub fn heard_lately(&self, node: NodeId, now: Duration) -> bool {
        self.heard_within(node, now, self.cfg.dead_after)
    }

    /// Whether `node` was heard, confirmed or not, within `d` before `now`.
    pub fn heard_within(&self, node: NodeId, now: Duration, d: Duration) -> bool {
        self.peer(node).is_some_and(|p| p.heard_within(now, d))
    }

    /// Peers whose last heartbeat declared this host (in its current incarnation)
    /// Failed although this host did not yield to them: the link between the two is
    /// broken in at least one direction.
    pub fn accusers(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|p| p.says_i_failed && p.state.present())
            .map(|p| p.id)
            .collect()
    }

    /// How long ago this host last found itself stalled, if it ever did.
    pub fn stalled_ago(&self, now: Duration) -> Option<Duration> {
        self.stalled_at.map(|t| now.saturating_sub(t))
    }

    /// Status of every peer.
    pub fn peers(&self, now: Duration) -> Vec<PeerStatus> {
        self.peers.iter().map(|p| p.status(now)).collect()
    }

    /// The heartbeat to send on interconnect `interconnect`.
    pub fn heartbeat(&self, interconnect: usize) -> Heartbeat {
        Heartbeat {
            interconnect: interconnect as u8,
            watchdog: self.watchdog,
            quorate: self.quorum.quorate,
            votes: self.quorum.votes,
            config_digest: self.cfg.digest,
            domains_version: self.domains_version,
            view: self
                .peers
                .iter()
                .map(|p| PeerView {
                    node: p.id,
                    incarnation: p.echoed(),
                    // Shown as Unknown where this host could not be counted or fenced
                    // by readers (Left, or Failed before ever heard), which every reader
                    // of header version 1 decodes.
                    state: p.shown(),
                })
                .collect(),
            probe: self.probed(),
            leaving: self.leaving,
            // The agent adds the sections of what it shares beyond membership.
            sections: Vec::new(),
        }
    }

    /// Whether `hb` shows that its sender heard this host's current incarnation: made
    /// since then, it is evidence of the sender's life. Otherwise it may be a recording
    /// replayed to this host after it (re)started: the driver takes nothing from it.
    pub fn is_fresh(&self, hb: &Heartbeat) -> bool {
        hb.view
            .iter()
            .any(|v| v.node == self.cfg.me && v.incarnation == self.incarnation)
    }

    /// Handles an authenticated heartbeat from `from`, received on `interconnect`.
    /// `accepted` is the replay window's verdict on the frame's incarnation. An
    /// unconfirmed one ([`Membership::is_fresh`]) only notes the sender's incarnation.
    pub fn on_heartbeat(
        &mut self,
        now: Duration,
        from: NodeId,
        incarnation: u64,
        accepted: Accepted,
        hb: &Heartbeat,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let cfg = &self.cfg;
        let fresh = self.is_fresh(hb);
        let Some(peer) = self.peers.iter_mut().find(|p| p.id == from) else {
            return out;
        };
        // A later incarnation than one heard before: a new life, against which a late
        // panic notice of the earlier one must not be taken (`notice::NEW_LIFE_GRACE`).
        let known = peer.echo.max(peer.incarnation);
        let later = known.is_none_or(|i| incarnation > i);
        if known.is_some_and(|i| incarnation > i) {
            peer.life_since = Some(now);
        }
        if !fresh {
            // A later incarnation, authenticated, after a panic notice: its agent runs
            // again, so the notice proves nothing of the life it runs.
            if later && peer.notice_at.is_some_and(|t| now >= t) {
                peer.notice_at = None;
                peer.panic_noticed = false;
                out.push(Action::Event(MembershipEvent::PanicNoticeRefuted {
                    node: from,
                }));
            }
            peer.echo = Some(incarnation);
            peer.unconfirmed_at = Some(now);
            return out;
        }
        peer.echo = Some(incarnation);
        if hb.config_digest != cfg.digest {
            if !peer.config_mismatch {
                peer.config_mismatch = true;
                out.push(Action::Event(MembershipEvent::ConfigMismatch {
                    node: from,
                }));
            }
            return out;
        }
        peer.config_mismatch = false;
        peer.heard(now, incarnation, accepted, hb, cfg, &mut out);
        if hb.leaving {
            // Its own authenticated word, for the incarnation the frame carries, passed
            // by the replay window and made after this host's incarnation began. A host
            // Failed in this view is not taken out by it: it is fenced or confirmed
            // down whatever it says.
            if !matches!(peer.state, HostState::Failed(_)) {
                peer.says_i_failed = false;
                peer.set_state(now, HostState::Left, &mut out);
            }
            self.update_quorum(&mut out);
            return out;
        }
        if hb.probe.contains(&cfg.me) {
            // A panic notice named this host: show at once that it lives.
            out.push(Action::SendHeartbeats);
        }
        peer.says_i_failed = hb.view.iter().any(|v| {
            v.node == cfg.me
                && v.incarnation == self.incarnation
                && matches!(v.state, HostState::Failed(_))
        });
        // Without quorum on either side (say two survivors of three that each declared
        // the other failed), the weaker one gives way so that the two can re-form.
        let says_i_failed = peer.says_i_failed;
        let just_stalled = self
            .stalled_at
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.dead_after);
        let yields = if just_stalled {
            // Just back from a stall, this host's own view is the stale one.
            true
        } else if hb.quorate {
            self.yields_to(from, hb.votes)
        } else {
            !self.quorum.quorate && self.cfg.priority(self.cfg.me) < self.cfg.priority(from)
        };
        // A host without quorum that hears a quorate partition it had written off holds
        // the stale view: it rejoins to merge (nobody else would ever take it back).
        let stale_minority = !self.quorum.quorate
            && hb.quorate
            && self
                .peers
                .iter()
                .any(|p| p.id == from && matches!(p.state, HostState::Failed(_)));
        if (says_i_failed && yields) || stale_minority {
            out.push(Action::Event(MembershipEvent::Expelled { by: from }));
            out.push(Action::Rejoin);
        }
        self.update_quorum(&mut out);
        out
    }

    /// Advances time: detects silence, and says when heartbeats are due.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        let gap = self
            .last_tick
            .map(|t| now.saturating_sub(t))
            .unwrap_or_default();
        self.last_tick = Some(now);
        if gap >= self.cfg.suspect_after {
            // This host did not run: whatever it missed is its own fault. Restart the
            // peers' timers; if they declared it failed meanwhile, their heartbeats say
            // so and it rejoins.
            out.push(Action::Event(MembershipEvent::Stalled {
                for_ms: gap.as_millis() as u64,
            }));
            self.stalled_at = Some(now);
            for peer in &mut self.peers {
                peer.forgive_silence(now);
            }
        }
        for peer in &mut self.peers {
            peer.check_silence(now, &self.cfg, &mut out);
        }
        self.judge_notices(now, &mut out);
        self.update_quorum(&mut out);
        if now >= self.next_heartbeat {
            out.push(Action::SendHeartbeats);
            // Never queue a burst after a stall: the next one is an interval from now.
            self.next_heartbeat = now.max(self.next_heartbeat) + self.cfg.interval;
        }
        out
    }

    /// Starts over with `incarnation` after being expelled: every peer is Unknown again
    /// and must be heard anew.
    pub fn rejoin(&mut self, now: Duration, incarnation: u64) -> Vec<Action> {
        self.incarnation = incarnation;
        for peer in &mut self.peers {
            // wait_for_all is a start-up rule: once every host was seen, a rejoin does
            // not arm it again (a two-node survivor must still be able to act).
            let (seen, echo) = (peer.ever_heard, peer.echo);
            let left = (peer.state == HostState::Left).then_some(peer.incarnation);
            *peer = Peer::new(peer.id, self.cfg.interconnects, now);
            peer.ever_heard = seen;
            // Still what it was heard as: peers confirm the new incarnation sooner.
            peer.echo = echo;
            // A host that left is gone whatever this host's own life does: it stays
            // Left (never failed for a silence it announced) until a new life of it.
            if let Some(incarnation) = left {
                peer.state = HostState::Left;
                peer.incarnation = incarnation;
            }
        }
        let mut out = Vec::new();
        self.update_quorum(&mut out);
        self.next_heartbeat = now;
        out
    }

    /// Bumps the version of the running-domain list carried in heartbeats.
    pub fn set_domains_version(&mut self, version: u64) {
        self.domains_version = version;
    }

    fn peer(&self, node: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == node)
    }

    /// Whether this host gives way to `other`, which has `their_votes` and declared this
    /// host Failed. This host's own votes only count the peers that did not declare it
    /// Failed (its view of them may be stale, e.g. right after a thaw). Without quorum
    /// it yields; otherwise fewer votes yields, and on a tie the lower survival priority
    /// (weight, then the name that sorts later) yields.
    fn yields_to(&self, other: NodeId, their_votes: u32) -> bool {
        let mine = 1 + self
            .peers
            .iter()
            .filter(|p| p.state.present() && !p.says_i_failed)
            .count() as u32;
        let all_seen = self.peers.iter().all(|p| p.ever_heard);
        if !self.rules().evaluate(mine, all_seen).quorate {
            return true;
        }
        match their_votes.cmp(&mine) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.cfg.priority(self.cfg.me) < self.cfg.priority(other),
        }
    }

    fn update_quorum(&mut self, out: &mut Vec<Action>) {
        // Once every peer is Up again, a past stall no longer colours this host's view.
        if let Some(at) = self.stalled_at {
            if self
                .peers
                .iter()
                .all(|p| p.state == HostState::Up && p.heard_after(at))
            {
                self.stalled_at = None;
            }
        }
        let votes = 1 + self.peers.iter().filter(|p| p.state.present()).count() as u32;
        let all_seen = self.peers.iter().all(|p| p.ever_heard);
        let q = self.rules().evaluate(votes, all_seen);
        if q != self.quorum {
            self.quorum = q;
            out.push(Action::Event(MembershipEvent::Quorum(q)));
        }
    }
}
