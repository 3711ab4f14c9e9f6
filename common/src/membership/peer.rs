//! One peer host as seen by this host: its links and its state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Action, FailReason, Heartbeat, HostState, MembershipConfig, MembershipEvent, WatchdogVerdict,
};
use crate::config::NodeId;
use crate::wire::Accepted;

/// State of one interconnect link to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Never heard on this interconnect.
    Unknown,
    /// Heartbeats arrive.
    Up,
    /// Silent for the dead time.
    Down,
}

/// A peer's status, for `hvctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Node id.
    pub node: NodeId,
    /// Host state.
    pub state: HostState,
    /// How long it has been in that state, ms.
    pub state_for_ms: u64,
    /// Link state per interconnect, in configuration order.
    pub links: Vec<LinkState>,
    /// Its current incarnation, if heard.
    pub incarnation: Option<u64>,
    /// Its last reported load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Failed but heard again: it must rejoin before counting.
    pub must_rejoin: bool,
    /// A kdump panic notice arrived from it since it was last Up.
    pub panic_noticed: bool,
    /// Time since last heard on any interconnect, ms.
    pub silent_for_ms: Option<u64>,
    /// Its configuration differs from ours.
    pub config_mismatch: bool,
    /// Whether its last heartbeat said it was quorate.
    pub quorate: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Link {
    last_heard: Option<Duration>,
    state: LinkState,
}

#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) id: NodeId,
    pub(super) incarnation: Option<u64>,
    /// The incarnation of its last authentic heartbeat, confirmed or not: what this
    /// host's heartbeats echo back, so that the peer can confirm them in turn.
    pub(super) echo: Option<u64>,
    /// When it was last heard unconfirmed (see [`super::Membership::is_fresh`]).
    pub(super) unconfirmed_at: Option<Duration>,
    pub(super) state: HostState,
    pub(super) since: Duration,
    pub(super) ever_heard: bool,
    pub(super) must_rejoin: bool,
    pub(super) panic_noticed: bool,
    pub(super) config_mismatch: bool,
    pub(super) says_i_failed: bool,
    links: Vec<Link>,
    last_heard: Option<Duration>,
    joining_count: u32,
    watchdog: WatchdogVerdict,
    quorate: bool,
    /// Not failed for silence before this time (a migration's pause).
    pub(super) relaxed_until: Option<Duration>,
    /// When the panic notice being judged (or accepted) arrived.
    pub(super) notice_at: Option<Duration>,
    /// When this host last probed it because of a panic notice.
    pub(super) probed_at: Option<Duration>,
    /// When its current incarnation (life) was first heard.
    pub(super) life_since: Option<Duration>,
}

impl Peer {
    pub(super) fn new(id: NodeId, interconnects: usize, now: Duration) -> Self {
        Peer {
            id,
            incarnation: None,
            echo: None,
            unconfirmed_at: None,
            state: HostState::Unknown,
            since: now,
            ever_heard: false,
            must_rejoin: false,
            panic_noticed: false,
            config_mismatch: false,
            says_i_failed: false,
            links: vec![
                Link {
                    last_heard: None,
                    state: LinkState::Unknown
                };
                interconnects
            ],
            last_heard: None,
            joining_count: 0,
            watchdog: WatchdogVerdict::Ok,
            quorate: false,
            relaxed_until: None,
            notice_at: None,
            probed_at: None,
            life_since: None,
        }
    }

    pub(super) fn set_state(&mut self, now: Duration, to: HostState, out: &mut Vec<Action>) {
        if self.state == to {
            return;
        }
        out.push(Action::Event(MembershipEvent::HostState {
            node: self.id,
            from: self.state,
            to,
        }));
        self.state = to;
        self.since = now;
        if to == HostState::Up {
            self.must_rejoin = false;
            self.panic_noticed = false;
            self.notice_at = None;
        }
    }

    pub(super) fn heard(
        &mut self,
        now: Duration,
        incarnation: u64,
        accepted: Accepted,
        hb: &Heartbeat,
        cfg: &MembershipConfig,
        out: &mut Vec<Action>,
    ) {
        // Failed without ever being heard in this host's life (startup fencing, or
        // after this host rejoined): no life of it was seen to fail, so there is
        // nothing for it to rejoin from; it joins like a host first heard.
        let failed_unheard = self.incarnation.is_none();
        let restarted = match (accepted, self.incarnation) {
            (Accepted::NewIncarnation { previous }, _) => Some(previous),
            (_, Some(known)) if known != incarnation => Some(known),
            _ => None,
        };
        if let Some(previous) = restarted {
            out.push(Action::Event(MembershipEvent::Incarnation {
                node: self.id,
                previous,
                current: incarnation,
            }));
        }
        self.incarnation = Some(incarnation);
        self.echo = Some(incarnation);
        self.ever_heard = true;
        self.watchdog = hb.watchdog;
        // Authenticated evidence of life outvotes an unauthenticated panic notice.
        if self.notice_at.is_some_and(|t| now >= t) {
            self.notice_at = None;
            self.panic_noticed = false;
            out.push(Action::Event(MembershipEvent::PanicNoticeRefuted {
                node: self.id,
            }));
        }
        self.quorate = hb.quorate;

        let gap = self.last_heard.map(|t| now.saturating_sub(t));
        self.last_heard = Some(now);
        let ic = hb.interconnect as usize;
        if let Some(link) = self.links.get_mut(ic) {
            link.last_heard = Some(now);
            if link.state != LinkState::Up {
                link.state = LinkState::Up;
                out.push(Action::Event(MembershipEvent::Link {
                    node: self.id,
                    interconnect: ic,
                    state: LinkState::Up,
                }));
            }
        }

        match self.state {
            HostState::Failed(_) if restarted.is_some() || failed_unheard => {
                self.joining_count = 1;
                self.set_state(now, HostState::Joining, out);
            }
            HostState::Failed(_) => {
                if !self.must_rejoin {
                    self.must_rejoin = true;
                    out.push(Action::Event(MembershipEvent::MustRejoin { node: self.id }));
                }
            }
            HostState::Unknown => {
                self.joining_count = 1;
                self.set_state(now, HostState::Joining, out);
            }
            HostState::Joining => {
                if gap.is_some_and(|g| g >= cfg.suspect_after) {
                    self.joining_count = 0;
                }
                self.joining_count += 1;
            }
            HostState::Left if restarted.is_some() => {
                self.joining_count = 1;
                self.set_state(now, HostState::Joining, out);
            }
            // It said it left in this incarnation: nothing it sends in it takes it back.
            HostState::Left => {}
            HostState::Suspect => self.set_state(now, HostState::Up, out),
            HostState::Up => {}
        }
        if self.state == HostState::Joining && self.joining_count >= cfg.rejoin_heartbeats {
            self.set_state(now, HostState::Up, out);
        }
        // Only a counted host is failed for hanging: a rejoining host's first verdict
        // describes the stall it is rejoining from.
        if let WatchdogVerdict::Hung { for_ms } = hb.watchdog {
            if Duration::from_millis(for_ms as u64) >= cfg.hung_limit && self.state.present() {
                self.set_state(now, HostState::Failed(FailReason::Hung), out);
            }
        }
    }

    /// The incarnation this host's heartbeats name for it. A Failed peer keeps the one
    /// it failed with, if any (so that a peer that rejoined under a new one is not told
    /// again that it failed); any other, the last one heard, confirmed or not.
    pub(super) fn echoed(&self) -> u64 {
        match self.state {
            HostState::Failed(_) => self.incarnation.or(self.echo),
            _ => self.echo.or(self.incarnation),
        }
        .unwrap_or(0)
    }

    /// The state this host's heartbeats show for it. Failed without being heard in this
    /// host's life, it is shown Unknown: no life of it was seen to fail, so it is not
    /// accused (it would take that for a one-way partition and fence its accuser while
    /// the accuser fences it); once it confirms this host, it joins.
    pub(super) fn shown(&self) -> HostState {
        match self.state {
            HostState::Failed(_) if self.incarnation.is_none() => HostState::Unknown,
            HostState::Left => HostState::Unknown,
            state => state,
        }
    }

    /// Whether a heartbeat of it, confirmed or not, arrived within `d` before `now`.
    pub(super) fn heard_within(&self, now: Duration, d: Duration) -> bool {
        [self.last_heard, self.unconfirmed_at]
            .into_iter()
            .flatten()
            .any(|t| now.saturating_sub(t) < d)
    }

    /// Whether a heartbeat of it arrived after `t`.
    pub(super) fn heard_after(&self, t: Duration) -> bool {
        self.last_heard.is_some_and(|h| h > t)
    }

    /// Treats the peer and its links as heard at `now` (after this host stalled).
    pub(super) fn forgive_silence(&mut self, now: Duration) {
        if self.last_heard.is_some() {
            self.last_heard = Some(now);
        }
        for link in &mut self.links {
            if link.last_heard.is_some() {
                link.last_heard = Some(now);
            }
        }
    }

    pub(super) fn check_silence(
        &mut self,
        now: Duration,
        cfg: &MembershipConfig,
        out: &mut Vec<Action>,
    ) {
        for (ic, link) in self.links.iter_mut().enumerate() {
            if link.state == LinkState::Up
                && link
                    .last_heard
                    .is_some_and(|t| now.saturating_sub(t) >= cfg.dead_after)
            {
                link.state = LinkState::Down;
                out.push(Action::Event(MembershipEvent::Link {
                    node: self.id,
                    interconnect: ic,
                    state: LinkState::Down,
                }));
            }
        }
        let Some(last) = self.last_heard else {
            // Never heard since this host started (or rejoined): after the dead time it
            // counts as failed, so a quorate partition can fence it before recovering
            // what it may still run (startup fencing).
            // Heard, though not confirmed (it may not hear this host: a one-way cut), it
            // is not taken for silent: it stays Unknown, neither counted nor fenced.
            let heard = self
                .unconfirmed_at
                .is_some_and(|t| now.saturating_sub(t) < cfg.dead_after);
            if self.state == HostState::Unknown
                && now.saturating_sub(self.since) >= cfg.dead_after
                && !heard
            {
                self.set_state(now, HostState::Failed(FailReason::Silent), out);
            }
            return;
        };
        let silent = now.saturating_sub(last);
        // Heard again while Failed, then silent for the dead time once more: no longer
        // heard alive, so an operator's confirm-down and a panic notice count again.
        if self.must_rejoin && silent >= cfg.dead_after {
            self.must_rejoin = false;
        }
        let relaxed = self.relaxed_until.is_some_and(|u| now < u);
        match self.state {
            // Relaxed (a migration's pause): suspect at most.
            HostState::Up | HostState::Suspect | HostState::Joining
                if silent >= cfg.dead_after && !relaxed =>
            {
                self.set_state(now, HostState::Failed(FailReason::Silent), out);
            }
            HostState::Up if silent >= cfg.suspect_after => {
                self.set_state(now, HostState::Suspect, out);
            }
            _ => {}
        }
    }

    pub(super) fn status(&self, now: Duration) -> PeerStatus {
        PeerStatus {
            node: self.id,
            state: self.state,
            state_for_ms: now.saturating_sub(self.since).as_millis() as u64,
            links: self.links.iter().map(|l| l.state).collect(),
            incarnation: self.incarnation,
            watchdog: self.watchdog,
            must_rejoin: self.must_rejoin,
            panic_noticed: self.panic_noticed,
            silent_for_ms: self
                .last_heard
                .map(|t| now.saturating_sub(t).as_millis() as u64),
            config_mismatch: self.config_mismatch,
            quorate: self.quorate,
        }
    }
}
