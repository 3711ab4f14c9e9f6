//! Panic notices on the driver's side: the host core checks a datagram of the kdump port
//! and probes the host it names (`hvcluster_common::host::panic`); the events that forged
//! notices can repeat at will are recorded here, rate-limited.

use hvcluster_common::membership::MembershipEvent;

use super::Agent;

impl Agent {
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
