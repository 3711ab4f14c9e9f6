//! Wording shared by the host core, the host agent and `hvctl`.

use crate::config::NodeId;
use crate::fencing::{DownRecord, Proof};
use crate::membership::WatchdogVerdict;

/// A load-watchdog verdict in words, e.g. `slow (lateness 80 ms, cpu pressure 40%)`.
pub fn verdict_text(v: WatchdogVerdict) -> String {
    match v {
        WatchdogVerdict::Ok => "ok".into(),
        WatchdogVerdict::Slow {
            lateness_ms,
            psi_percent,
        } => {
            format!("slow (lateness {lateness_ms} ms, cpu pressure {psi_percent}%)")
        }
        WatchdogVerdict::Hung { for_ms } => format!("HUNG for {for_ms} ms"),
    }
}

/// What proves a DOWN record and who obtained it, e.g. `powered off and confirmed by h1
/// via ipmi-h3`.
pub fn proof_text(r: &DownRecord, name: impl Fn(NodeId) -> String) -> String {
    match &r.proof {
        Proof::PowerOff { devices } => format!(
            "powered off and confirmed by {} via {}",
            name(r.by),
            devices.join(", ")
        ),
        Proof::KdumpNotice => format!("its kdump panic notice, accepted by {}", name(r.by)),
        Proof::Operator => format!("an operator's confirmation on {}", name(r.by)),
    }
}
