//! Panic notices on the driver's side: a datagram on the kdump port is checked and handed
//! to the membership core, which probes the host it names (see
//! `hvcluster_common::membership`); the events that forged notices can repeat at will are
//! rate-limited.

use std::net::SocketAddr;
use std::time::Instant;

use hvcluster_common::kdump;
use hvcluster_common::membership::MembershipEvent;
use serde_json::json;

use super::Agent;

impl Agent {
    pub(super) fn on_kdump(&mut self, at: Instant, from: SocketAddr, bytes: &[u8]) {
        if let Err(e) = kdump::parse_notice(bytes) {
            if self
                .member
                .counters
                .bump_logged("kdump_malformed", Instant::now())
                .is_some()
            {
                tracing::warn!(from = %from, cause = %e, "malformed datagram on the kdump port");
            }
            return;
        }
        let Some(&node) = self.kdump_sources.get(&from.ip()) else {
            self.member.record_limited(
                "kdump_refused",
                None,
                "kdump_refused",
                |since| {
                    format!(
                        "ignored {since} panic notice(s) from {} which is no host's address",
                        from.ip()
                    )
                },
                json!({ "from": from.to_string() }),
            );
            return;
        };
        if node == self.member.me {
            self.member.counters.bump("kdump_own");
            return;
        }
        self.member.counters.bump("kdump_accepted");
        // Unauthenticated: it starts a probe and counts only if the host stays silent.
        let actions = self
            .membership
            .on_kdump_notice(self.member.clock_at(at), node);
        self.perform(actions);
    }

    pub(super) fn report_limited(&mut self, e: MembershipEvent) {
        let detail = serde_json::to_value(&e).unwrap_or_default();
        let (subject, kind, message) =
            crate::describe::membership_event(&e, |n| self.name(n), |_| String::new(), "");
        let counter = match e {
            MembershipEvent::PanicNotice { .. } => "kdump_probes",
            _ => "kdump_refuted",
        };
        self.member.record_limited(
            counter,
            subject.as_deref(),
            kind,
            |since| match since {
                1 => message,
                n => format!("{message} ({n} since the last report)"),
            },
            detail,
        );
    }
}
