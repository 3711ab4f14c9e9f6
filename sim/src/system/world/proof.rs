//! The rule that no host is DOWN without the proof its record names being true.

use hvcluster_common::fencing::{DownRecord, Proof};

use super::{hid, SystemWorld};

impl SystemWorld {
    /// No DOWN without proof: a record is judged when it is first written, the moment
    /// its proof was obtained.
    pub(super) fn judge_proof(&mut self, h: usize, r: &DownRecord) {
        let t = r.target as usize - 1;
        let key = (r.target, r.incarnation, r.by);
        if self.record_life.contains_key(&key) {
            return;
        }
        let life = if r.incarnation != 0 {
            r.incarnation
        } else {
            self.boot_incarnation[t]
        };
        self.record_life.insert(key, life);
        // A record of an earlier life (the host booted again since) was true then.
        if r.incarnation != 0 && r.incarnation < self.boot_incarnation[t] {
            return;
        }
        let target = &self.hosts[t];
        let proved = match r.proof {
            Proof::PowerOff { .. } => target.fenced_off && !target.powered,
            // A notice of an earlier life may arrive late; what it must not do is
            // make a running host DOWN.
            Proof::KdumpNotice => !target.powered,
            Proof::Operator => !target.powered,
        };
        if !proved {
            self.fail(format!(
                "h{} holds h{} DOWN by {:?} (from h{}) but it is not off that way",
                hid(h),
                r.target,
                r.proof,
                r.by
            ));
        }
    }
}
