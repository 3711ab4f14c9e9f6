//! The host heartbeat kept within one frame ([`hvcluster_common::heartbeat_budget`]),
//! and the alarm when a heartbeat is cut down or cannot be sent at all: an event and a
//! counter (at most one event every 10 s each) and an error in the log.

use hvcluster_common::heartbeat_budget::{self, BUDGET};
use hvcluster_common::host_heartbeat::HostSections;
use hvcluster_common::membership::Heartbeat;
use serde_json::json;

use super::Agent;
use crate::outbox::SendReport;

impl Agent {
    /// Caps the sections guests drive, writes `sections` into `hb` and, if it is still
    /// too large, leaves sections out so that it fits: the heartbeat always goes out.
    pub(super) fn fit_heartbeat(&mut self, hb: &mut Heartbeat, sections: &mut HostSections) {
        let fitted = heartbeat_budget::fit(hb, sections, BUDGET);
        for (section, n) in &fitted.capped {
            self.member
                .counters
                .add(&format!("heartbeat_capped_{section}"), *n as u64);
        }
        if fitted.dropped.is_empty() {
            return;
        }
        let dropped = fitted.dropped.join(", ");
        let size = fitted.size;
        let me = self.member.own_name.clone();
        self.member.record_limited(
            "heartbeats_oversized",
            Some(&me),
            "heartbeat_oversized",
            |since| {
                tracing::error!(%dropped, size, since, "heartbeat over its frame: sections left out");
                format!(
                    "{since} heartbeat(s) too large for a frame since the last report: sent \
                     without {dropped} ({size} bytes); other hosts miss that information meanwhile"
                )
            },
            json!({ "dropped": fitted.dropped, "size": size, "budget": BUDGET }),
        );
    }

    /// Raises the alarm when a heartbeat could not be sent at all.
    pub(super) fn check_sent(&mut self, report: &SendReport) {
        let Some(why) = report.unsendable.clone() else {
            return;
        };
        let me = self.member.own_name.clone();
        self.member.record_limited(
            "heartbeats_unsendable",
            Some(&me),
            "heartbeat_unsendable",
            |since| {
                tracing::error!(cause = %why, since, "heartbeat not sent");
                format!(
                    "{since} heartbeat(s) could not be sent since the last report: {why}; the \
                     other hosts will take this host for failed"
                )
            },
            json!({ "why": why }),
        );
    }
}
