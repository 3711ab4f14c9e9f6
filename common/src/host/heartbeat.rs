//! The core's part of the heartbeat: what it puts in (membership, DOWN records, linked
//! guests, kill orders and answers) and what it takes from a peer's.

use std::time::Duration;

use super::{kill_cx, Effect, HostCore};
use crate::config::NodeId;
use crate::membership::Heartbeat;
use crate::wire::Accepted;

impl HostCore {
    /// This host's heartbeat on interconnect `ic`, with the core's fields filled;
    /// `runs_here` says whether a domain still runs here (a guest whose link closed a
    /// moment ago is reported only then). The driver adds the fields it still owns.
    pub fn heartbeat(
        &mut self,
        now: Duration,
        ic: usize,
        runs_here: impl Fn(&str) -> bool,
    ) -> Heartbeat {
        let mut hb = self.membership.heartbeat(ic);
        hb.down = self.fence.down_records();
        hb.guests = self.links.presence(now, runs_here);
        hb.kill_orders = self.kills.orders();
        hb.kill_answers = self.kills.answers(now);
        hb
    }

    /// An authenticated heartbeat of `from` ([`super::Event::Heartbeat`], lent rather
    /// than given: the driver reads the fields it still owns after). One possibly
    /// recorded before this agent started (not fresh) only notes the sender's
    /// incarnation: nothing in it is news.
    pub fn heard(
        &mut self,
        now: Duration,
        (from, incarnation): (NodeId, u64),
        accepted: Accepted,
        hb: &Heartbeat,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        self.on_heartbeat(now, (from, incarnation), accepted, hb, &mut out);
        self.after_downs(now, &mut out);
        out
    }

    fn on_heartbeat(
        &mut self,
        now: Duration,
        (from, incarnation): (NodeId, u64),
        accepted: Accepted,
        hb: &Heartbeat,
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
        self.links.on_heartbeat(from, &hb.guests);
        let cx = kill_cx(&self.cfg, now, &self.links, &self.membership);
        let carried = (&hb.kill_orders[..], &hb.kill_answers[..]);
        self.kills.heard(cx, from, carried, out);
        if !hb.down.is_empty() {
            let (fence, m) = (&mut self.fence, &self.membership);
            fence.on_peer_downs(&hb.down, m, now, out);
        }
    }
}
