//! The core's part of the heartbeat: what it puts in (membership, DOWN records, linked
//! guests, kill orders and answers) and what it takes from a peer's.

use std::time::Duration;

use super::{kill_cx, Effect, HostCore};
use crate::config::NodeId;
use crate::host_heartbeat::HostSections;
use crate::membership::Heartbeat;
use crate::wire::Accepted;

impl HostCore {
    /// This host's heartbeat header on interconnect `ic` and its sections, with the
    /// core's sections filled; `runs_here` says whether a domain still runs here (a guest
    /// whose link closed a moment ago is reported only then). The driver adds the
    /// sections it still owns and writes them into the heartbeat.
    pub fn heartbeat(
        &mut self,
        now: Duration,
        ic: usize,
        runs_here: impl Fn(&str) -> bool,
    ) -> (Heartbeat, HostSections) {
        let hb = self.membership.heartbeat(ic);
        let sections = HostSections {
            down: self.fence.down_records(),
            guests: self.links.presence(now, runs_here),
            kill_orders: self.kills.orders(),
            kill_answers: self.kills.answers(now),
            ..HostSections::default()
        };
        (hb, sections)
    }

    /// An authenticated heartbeat of `from` with its sections as read
    /// ([`HostSections::read`]; [`super::Event::Heartbeat`], lent rather than given: the
    /// driver reads the sections it still owns after). One possibly
    /// recorded before this agent started (not fresh) only notes the sender's
    /// incarnation: nothing in it is news.
    pub fn heard(
        &mut self,
        now: Duration,
        (from, incarnation): (NodeId, u64),
        accepted: Accepted,
        (hb, sections): (&Heartbeat, &HostSections),
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        self.on_heartbeat(now, (from, incarnation), accepted, (hb, sections), &mut out);
        self.after_downs(now, &mut out);
        out
    }

    fn on_heartbeat(
        &mut self,
        now: Duration,
        (from, incarnation): (NodeId, u64),
        accepted: Accepted,
        (hb, s): (&Heartbeat, &HostSections),
        out: &mut Vec<Effect>,
    ) {
        let fresh = self.membership.is_fresh(hb);
        let actions = self
            .membership
            .on_heartbeat(now, from, incarnation, accepted, hb);
        self.membership_actions(actions, out);
        if !fresh {
            out.push(Effect::Count("heartbeats_unconfirmed"));
            return;
        }
        self.links.on_heartbeat((from, incarnation), &s.guests);
        let cx = kill_cx(&self.cfg, now, &self.links, &self.membership);
        let carried = (&s.kill_orders[..], &s.kill_answers[..]);
        self.kills.heard(cx, from, carried, out);
        if !s.down.is_empty() {
            let (fence, m) = (&mut self.fence, &self.membership);
            fence.on_peer_downs(&s.down, m, now, out);
        }
    }
}
