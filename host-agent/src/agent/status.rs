//! The status snapshot answered to `hvctl status`.

use hvcluster_common::admin::{HostLine, HostStatus};
use hvcluster_common::membership::{HostState, LinkState};

use super::Agent;

impl Agent {
    /// This host's view of the cluster.
    pub(super) fn status(&self) -> HostStatus {
        let now = self.now();
        let peers = self.core.membership().peers(now);
        let fence = self.core.fencing().machine().status();
        let hosts = self
            .config
            .hosts
            .iter()
            .map(|h| {
                if h.node_id == self.member.me {
                    return HostLine {
                        name: h.name.clone(),
                        node_id: h.node_id,
                        weight: h.weight,
                        local: true,
                        state: HostState::Up,
                        state_for_ms: now.as_millis() as u64,
                        links: vec![LinkState::Up; self.member.outbox.interconnects()],
                        incarnation: Some(self.core.membership().incarnation()),
                        watchdog: self.core.membership().watchdog(),
                        must_rejoin: false,
                        panic_noticed: false,
                        silent_for_ms: None,
                        config_mismatch: false,
                        fence: None,
                    };
                }
                let p = peers
                    .iter()
                    .find(|p| p.node == h.node_id)
                    .expect("every peer is tracked");
                HostLine {
                    name: h.name.clone(),
                    node_id: h.node_id,
                    weight: h.weight,
                    local: false,
                    state: p.state,
                    state_for_ms: p.state_for_ms,
                    links: p.links.clone(),
                    incarnation: p.incarnation,
                    watchdog: p.watchdog,
                    must_rejoin: p.must_rejoin,
                    panic_noticed: p.panic_noticed,
                    silent_for_ms: p.silent_for_ms,
                    config_mismatch: p.config_mismatch,
                    fence: fence.iter().find(|f| f.node == h.node_id).cloned(),
                }
            })
            .collect();
        HostStatus {
            cluster: self.config.cluster.name.clone(),
            host: self.member.own_name.clone(),
            node_id: self.member.me,
            incarnation: self.core.membership().incarnation(),
            started_unix_ms: self.member.started_unix_ms(),
            quorum: self.core.membership().quorum(),
            watchdog: self.core.membership().watchdog(),
            realtime: self.prepared.realtime,
            memory_locked: self.prepared.memory_locked,
            interconnects: self
                .config
                .interconnects
                .iter()
                .map(|i| i.name.clone())
                .collect(),
            hosts,
            counters: self.member.counters.snapshot(),
            guests: self.linked_guests(),
            domains: self.domain_lines(),
            hypervisor_problem: self.hypervisor_problem.clone(),
            applications: crate::apps::app_lines(&self.host_apps.apps.engine, |n| self.name(n)),
            migrations: self.migrations.all_known(),
            maintenance: self.maintenance_lines(),
            journal_problem: self.journal_alarm(),
        }
    }

    /// Domains of this host and of the others, by host then name.
    fn domain_lines(&self) -> Vec<hvcluster_common::admin::DomainLine> {
        let line = |host: String, d: &hvcluster_common::hostlink::DomainPresence| {
            hvcluster_common::admin::DomainLine {
                host,
                name: d.name.clone(),
                uuid: d.uuid.clone(),
                state: d.state.clone(),
            }
        };
        let mut out: Vec<_> = Vec::new();
        for (host, domains) in self.domain_holders() {
            out.extend(domains.iter().map(|d| line(self.name(host), d)));
        }
        out.sort_by(|a, b| (&a.host, &a.name).cmp(&(&b.host, &b.name)));
        out
    }

    /// Guests linked here and to the other hosts, by host then guest cluster and node.
    fn linked_guests(&self) -> Vec<hvcluster_common::admin::LinkedGuestLine> {
        use hvcluster_common::admin::LinkedGuestLine;
        let mut out: Vec<LinkedGuestLine> = self
            .core
            .links()
            .local()
            .map(|(_, g)| LinkedGuestLine {
                host: self.member.own_name.clone(),
                cluster: g.cluster.clone(),
                node: g.node.clone(),
                node_id: g.node_id,
                domain: g.domain.clone(),
            })
            .collect();
        for (host, guests) in self.core.links().remote() {
            out.extend(guests.iter().map(|g| LinkedGuestLine {
                host: self.name(*host),
                cluster: g.cluster.clone(),
                node: g.node.clone(),
                node_id: g.node_id,
                domain: None,
            }));
        }
        out.sort_by(|a, b| (&a.host, &a.cluster, &a.node).cmp(&(&b.host, &b.cluster, &b.node)));
        out.dedup();
        out
    }
}
