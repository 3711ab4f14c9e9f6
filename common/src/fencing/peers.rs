//! DOWN records shared by peers: adopted, unless they are about an earlier life of the
//! host than one this host has seen.

use std::time::Duration;

use super::{DownRecord, FenceAction, Fencing};
use crate::membership::{HostState, Membership};

impl Fencing {
    /// A peer says `record.target` is DOWN. Adopted unless this host heard the target in
    /// a newer incarnation than the proof: then it rebooted since, and the proof says
    /// nothing of its new life, even once that falls silent too. (A record of a host its
    /// prover never heard, incarnation 0, is judged only against a host heard alive.)
    pub fn on_peer_down(
        &mut self,
        record: &DownRecord,
        current_incarnation: u64,
        present: bool,
    ) -> Vec<FenceAction> {
        let mut out = Vec::new();
        let seen = self.seen.get(&record.target).copied().unwrap_or(0);
        let later_life = current_incarnation.max(seen) > record.incarnation;
        if record.target == self.cfg.me || (later_life && (present || record.incarnation != 0)) {
            return out;
        }
        if let Some(t) = self.targets.get_mut(&record.target) {
            if !t.decided() {
                t.journal(record.clone(), &mut out);
            }
        }
        out
    }

    /// DOWN records a peer's heartbeat carried, judged against `membership` at `now`.
    pub fn on_peer_downs(
        &mut self,
        records: &[DownRecord],
        membership: &Membership,
        now: Duration,
    ) -> Vec<FenceAction> {
        // Every heartbeat repeats them: skip the ones already held before building the
        // membership snapshot.
        let new: Vec<&DownRecord> = records
            .iter()
            .filter(|r| r.target != self.cfg.me && !self.decided(r.target))
            .collect();
        if new.is_empty() {
            return Vec::new();
        }
        let peers = membership.peers(now);
        let mut out = Vec::new();
        for r in new {
            let facts = peers.iter().find(|p| p.node == r.target);
            let inc = facts.and_then(|p| p.incarnation).unwrap_or(0);
            let present = facts.is_some_and(|p| p.state.present() || p.state == HostState::Joining);
            out.extend(self.on_peer_down(r, inc, present));
        }
        out
    }
}
