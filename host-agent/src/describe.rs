//! Wording of membership events and states for the event log and logs.

use hvcluster_common::config::NodeId;
use hvcluster_common::membership::{FailReason, HostState, LinkState, MembershipEvent};

/// Subject, kind and message of a membership event; `name` maps node ids to host names,
/// `ic_name` interconnect indexes to names, `host` is this host's name.
pub fn membership_event(
    e: &MembershipEvent,
    name: impl Fn(NodeId) -> String,
    ic_name: impl Fn(usize) -> String,
    host: &str,
) -> (Option<String>, &'static str, String) {
    match e {
        MembershipEvent::HostState { node, from, to } => {
            let n = name(*node);
            let msg = format!("{n}: {} -> {}", state_text(*from), state_text(*to));
            (Some(n), "host_state", msg)
        }
        MembershipEvent::Link {
            node,
            interconnect,
            state,
        } => {
            let n = name(*node);
            let msg = format!("{n}: link {} {}", ic_name(*interconnect), link_text(*state));
            (Some(n), "link", msg)
        }
        MembershipEvent::Quorum(q) => {
            let msg = if q.quorate {
                format!(
                    "quorum held ({} votes present, {} needed)",
                    q.votes, q.needed
                )
            } else if q.waiting_for_all {
                "no quorum: waiting to see every host once (wait_for_all)".to_string()
            } else {
                format!(
                    "QUORUM LOST: {} vote(s) present, {} needed; this host will not act",
                    q.votes, q.needed
                )
            };
            (Some(host.to_string()), "quorum", msg)
        }
        MembershipEvent::Incarnation {
            node,
            previous,
            current,
        } => {
            let n = name(*node);
            let msg = format!("{n}: agent restarted (incarnation {previous} -> {current})");
            (Some(n), "incarnation", msg)
        }
        MembershipEvent::MustRejoin { node } => {
            let n = name(*node);
            let msg = format!("{n}: heard again after it failed; it must rejoin before it counts");
            (Some(n), "must_rejoin", msg)
        }
        MembershipEvent::ConfigMismatch { node } => {
            let n = name(*node);
            let msg = format!(
                "{n}: its cluster configuration differs from this host's; its heartbeats are refused \
                 (copy the same cluster.toml to every host)"
            );
            (Some(n), "config_mismatch", msg)
        }
        MembershipEvent::Stalled { for_ms } => {
            let msg = format!(
                "this host did not run for {for_ms} ms (frozen or starved); peers' silence meanwhile is not held against them"
            );
            (Some(host.to_string()), "stalled", msg)
        }
        MembershipEvent::Expelled { by } => {
            let msg = format!(
                "{} declared this host failed; starting a new incarnation",
                name(*by)
            );
            (Some(host.to_string()), "expelled", msg)
        }
        MembershipEvent::PanicNotice { node, probe_ms } => {
            let n = name(*node);
            let msg = format!(
                "{n}: panic notice received; probing it, the notice counts only if it stays silent for {probe_ms} ms"
            );
            (Some(n), "kdump_notice", msg)
        }
        MembershipEvent::PanicNoticeRefuted { node } => {
            let n = name(*node);
            let msg = format!(
                "{n}: panic notice disregarded: authenticated heartbeats arrived after it (forged, or a stray notice)"
            );
            (Some(n), "kdump_refuted", msg)
        }
    }
}

/// Human text of a host state, as in logs and `hvctl status`.
pub fn state_text(s: HostState) -> String {
    match s {
        HostState::Unknown => "Unknown".into(),
        HostState::Joining => "Joining".into(),
        HostState::Up => "Up".into(),
        HostState::Suspect => "Suspect".into(),
        HostState::Left => "Left".into(),
        HostState::Failed(r) => format!(
            "Failed ({})",
            match r {
                FailReason::Silent => "silent",
                FailReason::Panic => "panic notice",
                FailReason::Hung => "reported hung",
            }
        ),
    }
}

pub fn link_text(s: LinkState) -> &'static str {
    match s {
        LinkState::Unknown => "unknown",
        LinkState::Up => "up",
        LinkState::Down => "DOWN",
    }
}
