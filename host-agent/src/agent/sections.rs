//! What was not taken of a peer's heartbeat sections: an unknown section (a newer
//! agent's) is skipped, a broken one left out, each counted and reported at most once
//! every 10 s; the rest of the heartbeat counts as usual.

use hvcluster_common::config::NodeId;
use hvcluster_common::host_heartbeat::SectionIssue;
use serde_json::json;

use super::Agent;

impl Agent {
    /// Counts and reports the sections of `from`'s heartbeat that were not taken.
    pub(super) fn report_sections(&mut self, from: NodeId, issues: Vec<SectionIssue>) {
        let peer = self.name(from);
        for issue in issues {
            match issue {
                SectionIssue::Unknown { id, version } => self.member.record_limited(
                    "heartbeat_sections_unknown",
                    Some(&peer),
                    "heartbeat_section_unknown",
                    |since| {
                        format!(
                            "{since} heartbeat section(s) of a kind this agent does not know \
                             skipped since the last report; latest: section {id} version \
                             {version} from {peer} (an agent of a newer release)"
                        )
                    },
                    json!({ "peer": peer, "id": id, "version": version }),
                ),
                SectionIssue::Dropped {
                    name,
                    version,
                    error,
                } => self.member.record_limited(
                    &format!("heartbeat_sections_dropped_{name}"),
                    Some(&peer),
                    "heartbeat_section_dropped",
                    |since| {
                        tracing::warn!(%peer, section = name, version, cause = %error, since, "heartbeat section dropped");
                        format!(
                            "{since} heartbeat section(s) {name} dropped since the last report: \
                             the one of {peer} (version {version}) does not decode ({error}); \
                             the rest of its heartbeats counts, this host misses its {name} \
                             meanwhile"
                        )
                    },
                    json!({ "peer": peer, "section": name, "version": version, "why": error.to_string() }),
                ),
            }
        }
    }
}
