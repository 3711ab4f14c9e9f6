//! Scenario files: a cluster, a timeline of faults and operator actions, and
//! expectations. The same files drive `hvlab run`, the tests, the benchmarks and the demo.

mod names;
mod step;

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::cluster::ClusterSpec;
pub use names::{AppWatch, ForgeKind, LinkName, ReasonName, StateName};
pub use step::Step;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, as given to `hvlab run --scenario`.
    pub name: String,
    /// What it shows, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// The cluster it runs on.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The timeline, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// The scenarios shipped with hvlab, embedded in the binary.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("demo", include_str!("../../../scenarios/demo.toml")),
    (
        "detect-power-loss",
        include_str!("../../../scenarios/detect-power-loss.toml"),
    ),
    (
        "detect-hang",
        include_str!("../../../scenarios/detect-hang.toml"),
    ),
    (
        "detect-kdump",
        include_str!("../../../scenarios/detect-kdump.toml"),
    ),
    ("link-cut", include_str!("../../../scenarios/link-cut.toml")),
    (
        "isolation",
        include_str!("../../../scenarios/isolation.toml"),
    ),
    ("forged", include_str!("../../../scenarios/forged.toml")),
    (
        "agent-restart",
        include_str!("../../../scenarios/agent-restart.toml"),
    ),
    (
        "host-leave",
        include_str!("../../../scenarios/host-leave.toml"),
    ),
    (
        "fence-power-loss",
        include_str!("../../../scenarios/fence-power-loss.toml"),
    ),
    (
        "fence-level-fallback",
        include_str!("../../../scenarios/fence-level-fallback.toml"),
    ),
    (
        "fence-hang",
        include_str!("../../../scenarios/fence-hang.toml"),
    ),
    (
        "fence-kdump",
        include_str!("../../../scenarios/fence-kdump.toml"),
    ),
    (
        "fence-kdump-proof",
        include_str!("../../../scenarios/fence-kdump-proof.toml"),
    ),
    (
        "fence-race-2node",
        include_str!("../../../scenarios/fence-race-2node.toml"),
    ),
    (
        "fence-minority",
        include_str!("../../../scenarios/fence-minority.toml"),
    ),
    (
        "fence-coordinator-dies",
        include_str!("../../../scenarios/fence-coordinator-dies.toml"),
    ),
    (
        "fence-journal",
        include_str!("../../../scenarios/fence-journal.toml"),
    ),
    (
        "fence-all-fail",
        include_str!("../../../scenarios/fence-all-fail.toml"),
    ),
    (
        "app-start",
        include_str!("../../../scenarios/app-start.toml"),
    ),
    (
        "linked-power-loss",
        include_str!("../../../scenarios/linked-power-loss.toml"),
    ),
    (
        "guest-hang",
        include_str!("../../../scenarios/guest-hang.toml"),
    ),
    (
        "linked-host-isolated",
        include_str!("../../../scenarios/linked-host-isolated.toml"),
    ),
    (
        "notice-lost-then-retried",
        include_str!("../../../scenarios/notice-lost-then-retried.toml"),
    ),
    (
        "slow-host-no-kill",
        include_str!("../../../scenarios/slow-host-no-kill.toml"),
    ),
    (
        "vm-tracking",
        include_str!("../../../scenarios/vm-tracking.toml"),
    ),
    (
        "vm-double-start-refused",
        include_str!("../../../scenarios/vm-double-start-refused.toml"),
    ),
    (
        "vm-double-run-detected",
        include_str!("../../../scenarios/vm-double-run-detected.toml"),
    ),
    (
        "vm-ha-restart",
        include_str!("../../../scenarios/vm-ha-restart.toml"),
    ),
    (
        "real-guest-failover",
        include_str!("../../../scenarios/real-guest-failover.toml"),
    ),
    (
        "libvirt-cmdline",
        include_str!("../../../scenarios/libvirt-cmdline.toml"),
    ),
    (
        "migrate-live",
        include_str!("../../../scenarios/migrate-live.toml"),
    ),
    (
        "host-maintenance",
        include_str!("../../../scenarios/host-maintenance.toml"),
    ),
    (
        "migrate-export",
        include_str!("../../../scenarios/migrate-export.toml"),
    ),
    (
        "migrate-fails",
        include_str!("../../../scenarios/migrate-fails.toml"),
    ),
    (
        "migrate-offline",
        include_str!("../../../scenarios/migrate-offline.toml"),
    ),
    (
        "switch-during-migrate-held",
        include_str!("../../../scenarios/switch-during-migrate-held.toml"),
    ),
    (
        "migrate-during-switch-refused",
        include_str!("../../../scenarios/migrate-during-switch-refused.toml"),
    ),
    (
        "host-app-vm-failover",
        include_str!("../../../scenarios/host-app-vm-failover.toml"),
    ),
    (
        "guest-kill-refused",
        include_str!("../../../scenarios/guest-kill-refused.toml"),
    ),
    (
        "linked-kdump-panic",
        include_str!("../../../scenarios/linked-kdump-panic.toml"),
    ),
    (
        "linked-hang",
        include_str!("../../../scenarios/linked-hang.toml"),
    ),
    (
        "no-host-link",
        include_str!("../../../scenarios/no-host-link.toml"),
    ),
    (
        "app-resource-failure",
        include_str!("../../../scenarios/app-resource-failure.toml"),
    ),
    (
        "app-switch",
        include_str!("../../../scenarios/app-switch.toml"),
    ),
    (
        "app-stop-fails",
        include_str!("../../../scenarios/app-stop-fails.toml"),
    ),
    (
        "guest-crash-leftcluster",
        include_str!("../../../scenarios/guest-crash-leftcluster.toml"),
    ),
    (
        "guest-rejoin",
        include_str!("../../../scenarios/guest-rejoin.toml"),
    ),
    (
        "app-maintenance",
        include_str!("../../../scenarios/app-maintenance.toml"),
    ),
    (
        "link-slowloris",
        include_str!("../../../scenarios/link-slowloris.toml"),
    ),
    (
        "journal-write-fails",
        include_str!("../../../scenarios/journal-write-fails.toml"),
    ),
    (
        "corrupt-state-files",
        include_str!("../../../scenarios/corrupt-state-files.toml"),
    ),
    (
        "key-file-mode",
        include_str!("../../../scenarios/key-file-mode.toml"),
    ),
    (
        "realtime-children",
        include_str!("../../../scenarios/realtime-children.toml"),
    ),
    (
        "admin-audit",
        include_str!("../../../scenarios/admin-audit.toml"),
    ),
    (
        "kdump-spoof-alive",
        include_str!("../../../scenarios/kdump-spoof-alive.toml"),
    ),
    (
        "kdump-spoof-alive-ipmi",
        include_str!("../../../scenarios/kdump-spoof-alive-ipmi.toml"),
    ),
    (
        "udp-flood-detect",
        include_str!("../../../scenarios/udp-flood-detect.toml"),
    ),
    (
        "guest-claims-foreign-domain",
        include_str!("../../../scenarios/guest-claims-foreign-domain.toml"),
    ),
    (
        "kill-request-flood",
        include_str!("../../../scenarios/kill-request-flood.toml"),
    ),
    (
        "replay-after-restart",
        include_str!("../../../scenarios/replay-after-restart.toml"),
    ),
    (
        "state-disk-blocked",
        include_str!("../../../scenarios/state-disk-blocked.toml"),
    ),
];

impl Scenario {
    /// Parses a scenario file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "{origin}{}: {}",
                line.map(|l| format!(":{l}")).unwrap_or_default(),
                e.message().trim()
            )
        })
    }

    /// An embedded scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Scenario> {
        if let Some((_, text)) = EMBEDDED.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, &format!("scenario {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return Scenario::parse(&text, &path.display().to_string());
        }
        anyhow::bail!(
            "no scenario {name_or_path:?}: give a file path or one of: {}",
            EMBEDDED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_scenario_parses() {
        for (name, text) in EMBEDDED {
            let s = Scenario::parse(text, name).unwrap();
            assert_eq!(&s.name, name, "file name and scenario name agree");
            assert!(!s.steps.is_empty());
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = Scenario::parse("name = \"x\"\n[[step]]\ndo = \"jump\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().starts_with("x.toml:"), "{err}");
    }
}
