//! Panic notices: a datagram on the kdump port is checked (format, a host's address,
//! not this host) before the membership probes the host it names; it counts only if that
//! host stays silent (see [`crate::membership`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use crate::config::NodeId;
use crate::host::effect::{Effect, LimitedText};
use crate::kdump;

/// The host a notice from `from` names, when it is well-formed and from another host's
/// address; otherwise what to count and record.
pub fn noticed_host(
    sources: &BTreeMap<IpAddr, NodeId>,
    me: NodeId,
    from: SocketAddr,
    bytes: &[u8],
    out: &mut Vec<Effect>,
) -> Option<NodeId> {
    if let Err(e) = kdump::parse_notice(bytes) {
        out.push(Effect::LogLimited {
            counter: "kdump_malformed",
            message: format!("malformed datagram on the kdump port from {from}: {e}"),
        });
        return None;
    }
    let Some(&node) = sources.get(&from.ip()) else {
        out.push(Effect::RecordLimited {
            counter: "kdump_refused",
            subject: None,
            kind: "kdump_refused",
            message: LimitedText::Count {
                before: "ignored ".into(),
                after: format!(
                    " panic notice(s) from {} which is no host's address",
                    from.ip()
                ),
            },
            detail: json!({ "from": from.to_string() }),
        });
        return None;
    };
    if node == me {
        out.push(Effect::Count("kdump_own"));
        return None;
    }
    out.push(Effect::Count("kdump_accepted"));
    Some(node)
}
