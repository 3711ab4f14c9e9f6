//! Wording of the membership events the guest agent records.

use crate::config::NodeId;
use crate::membership::MembershipEvent;

/// Subject, kind and message of a membership event worth recording (node states are
/// recorded by the guest node layer instead).
pub fn membership_event(
    e: &MembershipEvent,
    name: impl Fn(NodeId) -> String,
) -> Option<(Option<String>, &'static str, String)> {
    Some(match e {
        MembershipEvent::HostState { .. }
        | MembershipEvent::Quorum(_)
        | MembershipEvent::PanicNotice { .. }
        | MembershipEvent::PanicNoticeRefuted { .. } => return None,
        MembershipEvent::Link {
            node,
            interconnect,
            state,
        } => (
            Some(name(*node)),
            "link",
            format!("{}: interconnect {interconnect} {state:?}", name(*node)),
        ),
        MembershipEvent::Incarnation { node, .. } => (
            Some(name(*node)),
            "incarnation",
            format!("{}: its agent restarted", name(*node)),
        ),
        MembershipEvent::MustRejoin { node } => (
            Some(name(*node)),
            "must_rejoin",
            format!("{}: heard again after it left; it must rejoin", name(*node)),
        ),
        MembershipEvent::ConfigMismatch { node } => (
            Some(name(*node)),
            "config_mismatch",
            format!(
                "{}: its guest.toml differs from this node's; its heartbeats are refused \
                 until the files are identical (hvctl config check)",
                name(*node)
            ),
        ),
        MembershipEvent::Stalled { for_ms } => (
            None,
            "stalled",
            format!("this node did not run for {for_ms} ms"),
        ),
        MembershipEvent::Expelled { by } => (
            Some(name(*by)),
            "expelled",
            format!("{} declared this node failed; rejoining", name(*by)),
        ),
    })
}
