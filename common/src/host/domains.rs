//! Double runs: a domain listed running on several live hosts at once (its disks may be
//! corrupted) is reported once, when it starts; the two hosts of its migration holding
//! it meanwhile are one instance moving. The driver lists the domains and gathers the
//! other hosts' lists from their heartbeats.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::config::NodeId;
use crate::host::effect::Effect;
use crate::host::names::HostNames;
use crate::hostlink::DomainPresence;
use crate::migration::MigrationLock;

/// Domains seen running on several hosts (UUID and hosts), reported once.
#[derive(Debug, Default)]
pub struct DoubleRuns {
    known: BTreeSet<(String, Vec<NodeId>)>,
}

impl DoubleRuns {
    /// Checks the domain lists of the live hosts (this one included) against the
    /// migration `locks`; reports each new double run.
    pub fn check(
        &mut self,
        live: &[(NodeId, &[DomainPresence])],
        locks: &[MigrationLock],
        names: &HostNames,
    ) -> Vec<Effect> {
        let mut by_uuid: BTreeMap<&str, (&str, Vec<NodeId>)> = BTreeMap::new();
        for (host, domains) in live {
            for d in *domains {
                let entry = by_uuid.entry(&d.uuid).or_insert((&d.name, Vec::new()));
                entry.1.push(*host);
            }
        }
        // A domain on the two hosts of its migration is one instance moving.
        let moving = |uuid: &str, hosts: &[NodeId]| {
            locks
                .iter()
                .any(|l| l.uuid == uuid && hosts.iter().all(|h| *h == l.from || *h == l.to))
        };
        let now: BTreeSet<(String, Vec<NodeId>)> = by_uuid
            .iter()
            .filter(|(uuid, (_, hosts))| hosts.len() > 1 && !moving(uuid, hosts))
            .map(|(uuid, (_, hosts))| {
                let mut hosts = hosts.clone();
                hosts.sort_unstable();
                (uuid.to_string(), hosts)
            })
            .collect();
        let mut out = Vec::new();
        for (uuid, hosts) in now.difference(&self.known) {
            let name = by_uuid
                .get(uuid.as_str())
                .map(|(n, _)| *n)
                .unwrap_or_default();
            let hosts: Vec<String> = hosts.iter().map(|h| names.name(*h)).collect();
            out.push(Effect::Count("domain_double_runs"));
            out.push(Effect::Record {
                subject: Some(name.to_string()),
                kind: "domain_double_run",
                message: format!(
                    "domain {name} ({uuid}) runs on {} at the same time: its disks may be corrupted",
                    hosts.join(" and ")
                ),
                detail: json!({ "domain": name, "uuid": uuid, "hosts": hosts }),
            });
        }
        self.known = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::MigrationMode;

    fn vm(name: &str) -> DomainPresence {
        DomainPresence {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            state: "running".into(),
            memory_kib: 1024,
            vcpus: 1,
        }
    }

    fn lock(from: NodeId, to: NodeId) -> MigrationLock {
        MigrationLock {
            name: "vm1".into(),
            uuid: "uuid-vm1".into(),
            from,
            to,
            mode: MigrationMode::Live,
            ended: false,
            cluster: None,
        }
    }

    #[test]
    fn a_domain_on_two_hosts_is_reported_once_unless_it_is_moving_between_them() {
        let names = HostNames::default();
        let (one, two) = ([vm("vm1")], [vm("vm1"), vm("vm2")]);
        let live: [(NodeId, &[DomainPresence]); 2] = [(1, &one), (2, &two)];
        let mut d = DoubleRuns::default();
        assert!(d.check(&live, &[lock(1, 2)], &names).is_empty(), "moving");
        let first = d.check(&live, &[lock(1, 3)], &names);
        assert!(
            matches!(
                &first[..],
                [Effect::Count("domain_double_runs"), Effect::Record { .. }]
            ),
            "{first:?}"
        );
        assert!(d.check(&live, &[], &names).is_empty(), "reported once");
        assert!(d.check(&live[..1], &[], &names).is_empty(), "over");
        assert_eq!(
            d.check(&live, &[], &names).len(),
            2,
            "again: reported again"
        );
    }
}
