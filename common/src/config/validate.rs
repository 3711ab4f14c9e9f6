//! Semantic checks of a parsed `cluster.toml`, each naming its key and line.

use super::guest::validate::{check_applications, Members};
use super::locate::Seg;
use super::rules::{self, ClusterKind, EntryNames, MemberRules, Problems};
use super::ClusterConfig;

const KIND: ClusterKind = ClusterKind::Host;

/// Adds the problems of `config` to `c`; returns the cluster key when it is readable.
pub(super) fn validate(config: &ClusterConfig, c: &mut Problems<'_>) -> Option<Vec<u8>> {
    rules::check_cluster_name(c, KIND, &config.cluster.name);
    let key = rules::check_key(c, KIND, &config.cluster.key_file);
    rules::check_heartbeat(c, &config.heartbeat);
    check_interconnects(c, config);
    check_hosts(c, config);
    check_watchdog(c, config);
    check_quorum(c, config);
    check_fencing(c, config);
    check_host_link(c, config);
    let members = Members {
        table: "host",
        list: config
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), &h.addresses))
            .collect(),
    };
    check_applications(c, &config.applications, &members);
    key
}

/// `[host_link]`, each host's `link_address` and `[[guest_cluster]]`.
fn check_host_link(c: &mut Problems<'_>, config: &ClusterConfig) {
    if config.host_link.port == 0 {
        c.push(
            &[Seg::Key("host_link"), Seg::Key("port")],
            "port must be 1 to 65535",
        );
    }
    if config.host_link.notice_retry_ms < 10 {
        c.push(
            &[Seg::Key("host_link"), Seg::Key("notice_retry_ms")],
            "notice_retry_ms must be at least 10",
        );
    }
    check_link_limits(c, &config.host_link);
    for (i, h) in config.hosts.iter().enumerate() {
        if let Some(a) = h.link_address {
            if a.is_unspecified() || a.is_multicast() {
                c.push(
                    &[Seg::Key("host"), Seg::Index(i), Seg::Key("link_address")],
                    format!("{a} cannot be listened on: give the host's own address"),
                );
            }
        }
    }
    if config
        .hypervisor
        .destroy_command
        .as_ref()
        .is_some_and(|c| c.trim().is_empty())
    {
        c.push(
            &[Seg::Key("hypervisor"), Seg::Key("destroy_command")],
            "destroy_command is empty: give the command, or leave the key out",
        );
    }
    if config
        .hypervisor
        .uri
        .as_ref()
        .is_some_and(|u| !u.contains(":/"))
    {
        c.push(
            &[Seg::Key("hypervisor"), Seg::Key("uri")],
            "uri must be a libvirt connection URI, e.g. \"qemu:///system\"",
        );
    }
    if config
        .hypervisor
        .kill_nmi_ms
        .is_some_and(|ms| ms == 0 || ms > 600_000)
    {
        c.push(
            &[Seg::Key("hypervisor"), Seg::Key("kill_nmi_ms")],
            "kill_nmi_ms must be between 1 and 600000 (the wait for a crash dump before the \
             destroy), or left out",
        );
    }
    if config.hypervisor.destroy_timeout_ms == 0 {
        c.push(
            &[Seg::Key("hypervisor"), Seg::Key("destroy_timeout_ms")],
            "destroy_timeout_ms must be at least 1",
        );
    }
    if !(config.vm_ha.vcpu_ratio > 0.0 && config.vm_ha.vcpu_ratio.is_finite()) {
        c.push(
            &[Seg::Key("vm_ha"), Seg::Key("vcpu_ratio")],
            "vcpu_ratio must be a number above 0 (virtual CPUs per physical CPU), e.g. 4.0",
        );
    }
    if config.vm_ha.retry_ms == 0 {
        c.push(
            &[Seg::Key("vm_ha"), Seg::Key("retry_ms")],
            "retry_ms must be at least 1",
        );
    }
    check_migration(c, config);
    if !config.vm_ha.domains.is_empty() && config.hypervisor.uri.is_none() {
        c.push(
            &[Seg::Key("vm_ha"), Seg::Key("domain")],
            "highly available domains need [hypervisor] uri: the hosts start them through libvirt",
        );
    }
    for (i, d) in config.vm_ha.domains.iter().enumerate() {
        let at = [
            Seg::Key("vm_ha"),
            Seg::Key("domain"),
            Seg::Index(i),
            Seg::Key("name"),
        ];
        if d.name.trim().is_empty() {
            c.push(&at, "the domain name is empty");
        }
        if let Some(first) = config.vm_ha.domains[..i]
            .iter()
            .position(|o| o.name == d.name)
        {
            c.push(
                &at,
                format!("domain {} is listed twice (first as entry {first})", d.name),
            );
        }
    }
    let mut names = EntryNames::default();
    for (i, g) in config.guest_clusters.iter().enumerate() {
        names.check(
            c,
            &[Seg::Key("guest_cluster"), Seg::Index(i), Seg::Key("name")],
            (i, &g.name),
            || format!("{:?} is not a valid guest cluster name", g.name),
            |first| {
                format!(
                    "guest cluster {:?} is already listed by guest_cluster[{first}]",
                    g.name
                )
            },
        );
        rules::check_key_at(
            c,
            ClusterKind::Guest,
            &[
                Seg::Key("guest_cluster"),
                Seg::Index(i),
                Seg::Key("key_file"),
            ],
            &g.key_file,
        );
    }
    super::link_members::check(c, config);
}

fn check_interconnects(c: &mut Problems<'_>, config: &ClusterConfig) {
    let kdump = config.kdump;
    // The probe must end before silence alone would fail the host (checked once the
    // heartbeat thresholds themselves are in order).
    let probe = kdump.probe_ms;
    let hb = &config.heartbeat;
    let dead_after_valid = hb.dead_after_ms > hb.suspect_after_ms;
    if kdump.enabled && (probe < 10 || (dead_after_valid && probe >= hb.dead_after_ms)) {
        c.push(
            &[Seg::Key("kdump"), Seg::Key("probe_ms")],
            format!(
                "{probe} ms is out of range; use at least 10 ms and less than heartbeat.dead_after_ms ({} ms)",
                config.heartbeat.dead_after_ms
            ),
        );
    }
    rules::check_interconnects(c, KIND, &config.interconnects, |c, i, ic| {
        if kdump.enabled && ic.port == kdump.port {
            c.push(
                &[Seg::Key("interconnect"), Seg::Index(i), Seg::Key("port")],
                format!("port {} is also the kdump notice port", ic.port),
            );
        }
    });
}

fn check_hosts(c: &mut Problems<'_>, config: &ClusterConfig) {
    let mut rules = MemberRules::new(c, KIND, &config.interconnects, config.hosts.len());
    for (i, h) in config.hosts.iter().enumerate() {
        rules.identity(c, i, &h.name, h.node_id);
        if h.weight == 0 {
            c.push(
                &[Seg::Key("host"), Seg::Index(i), Seg::Key("weight")],
                "weight must be at least 1",
            );
        }
        rules.addresses(c, i, &h.name, &h.addresses);
        // A panic notice is attributed by its source address: each must name one host.
        for (k, addr) in h.kdump_addresses.iter().enumerate() {
            let path = [
                Seg::Key("host"),
                Seg::Index(i),
                Seg::Key("kdump_addresses"),
                Seg::Index(k),
            ];
            if let Some(first) = rules.claim_address(*addr, i).filter(|first| *first != i) {
                c.push(
                    &path,
                    format!(
                        "{addr} is already an address of host[{first}]; a panic notice from it \
                         would be ambiguous"
                    ),
                );
            }
        }
    }
}

fn check_watchdog(c: &mut Problems<'_>, config: &ClusterConfig) {
    let wd = &config.load_watchdog;
    let key = |k| [Seg::Key("load_watchdog"), Seg::Key(k)];
    if wd.interval_ms == 0 {
        c.push(&key("interval_ms"), "must be at least 1 ms");
    }
    let slow = ("slow_lateness_ms", wd.slow_lateness_ms);
    rules::check_longer(c, &key("hung_lateness_ms"), slow, wd.hung_lateness_ms);
    if wd.hung_limit_ms == 0 {
        c.push(&key("hung_limit_ms"), "must be at least 1 ms");
    }
    if !(0.0..=100.0).contains(&wd.slow_psi_percent) {
        c.push(&key("slow_psi_percent"), "must be between 0 and 100");
    }
    if wd.realtime_priority > 99 {
        c.push(
            &key("realtime_priority"),
            "SCHED_FIFO priorities go from 1 to 99 (0 turns it off)",
        );
    }
}

fn check_quorum(c: &mut Problems<'_>, config: &ClusterConfig) {
    if config.quorum.two_node == Some(true) && config.hosts.len() != 2 {
        c.push(
            &[Seg::Key("quorum"), Seg::Key("two_node")],
            format!(
                "two-node mode needs exactly 2 hosts, {} are configured",
                config.hosts.len()
            ),
        );
    }
}

fn check_fencing(c: &mut Problems<'_>, config: &ClusterConfig) {
    use super::DeviceKind;
    let f = &config.fencing;
    if f.retry_backoff_ms == 0 {
        c.push(
            &[Seg::Key("fencing"), Seg::Key("retry_backoff_ms")],
            "must be at least 1 ms",
        );
    }
    if f.max_backoff_ms < f.retry_backoff_ms {
        c.push(
            &[Seg::Key("fencing"), Seg::Key("max_backoff_ms")],
            format!(
                "must not be shorter than retry_backoff_ms ({} ms)",
                f.retry_backoff_ms
            ),
        );
    }
    let mut names = EntryNames::default();
    for (i, d) in config.fence_devices.iter().enumerate() {
        let at = |k| [Seg::Key("fence_device"), Seg::Index(i), Seg::Key(k)];
        names.check(
            c,
            &at("name"),
            (i, &d.name),
            || format!("{:?} is not a valid device name", d.name),
            |first| {
                format!(
                    "device {:?} is already defined by fence_device[{first}]",
                    d.name
                )
            },
        );
        match d.kind {
            DeviceKind::Agent => {
                if d.agent.as_deref().is_none_or(str::is_empty) {
                    c.push(&at("agent"), "a device of kind \"agent\" needs the fence agent program, e.g. agent = \"fence_ipmilan\"");
                }
                if d.timeout_ms == 0 {
                    c.push(&at("timeout_ms"), "must be at least 1 ms");
                }
                if d.params.contains_key("action") {
                    c.push(
                        &at("params"),
                        "\"action\" is chosen by the agent (off, then status); remove it",
                    );
                }
                if let Some(pf) = &d.password_file {
                    if let Err(e) = std::fs::read(pf) {
                        c.push(
                            &at("password_file"),
                            format!("cannot read {}: {e}", pf.display()),
                        );
                    }
                    if d.params.contains_key("password") {
                        c.push(
                            &at("params"),
                            "give the password either in params or in password_file, not both",
                        );
                    }
                }
            }
            DeviceKind::Kdump | DeviceKind::Manual => {
                if d.agent.is_some() || !d.params.is_empty() || d.password_file.is_some() {
                    c.push(
                        &at("kind"),
                        format!(
                            "agent, params and password_file only apply to kind = \"agent\", not {:?}",
                            format!("{:?}", d.kind).to_lowercase()
                        ),
                    );
                }
            }
        }
    }
    for (i, h) in config.hosts.iter().enumerate() {
        for (l, level) in h.fence_levels.iter().enumerate() {
            let at = [
                Seg::Key("host"),
                Seg::Index(i),
                Seg::Key("fence_levels"),
                Seg::Index(l),
            ];
            if level.is_empty() {
                c.push(
                    &at,
                    format!("fence level {} of {} names no device", l + 1, h.name),
                );
            }
            for name in level {
                if !names.contains(name) {
                    c.push(&at, format!("fence level {} of {} names {name:?}, which no [[fence_device]] defines", l + 1, h.name));
                }
            }
        }
    }
}

/// `[migration]`.
fn check_migration(c: &mut Problems<'_>, config: &ClusterConfig) {
    let m = &config.migration;
    let at = |k| [Seg::Key("migration"), Seg::Key(k)];
    if !m.dest_uri.contains(":/") {
        c.push(
            &at("dest_uri"),
            "dest_uri must be a libvirt connection URI, e.g. \"qemu+ssh://{address}/system\"",
        );
    }
    if let Some(n) = &m.network {
        if !config.interconnects.iter().any(|i| &i.name == n) {
            c.push(
                &at("network"),
                format!("there is no [[interconnect]] named {n:?}"),
            );
        }
    }
    if m.max_downtime_ms == 0 {
        c.push(&at("max_downtime_ms"), "max_downtime_ms must be at least 1");
    }
    if m.timeout_s == 0 {
        c.push(&at("timeout_s"), "timeout_s must be at least 1");
    }
    use crate::migration::MigrationMode::Export;
    if m.evacuate_mode == Export {
        c.push(
            &at("evacuate_mode"),
            "evacuate_mode must be \"live\" or \"offline\": maintenance moves running domains",
        );
    }
    for (i, d) in m.domains.iter().enumerate() {
        let path = |k| {
            [
                Seg::Key("migration"),
                Seg::Key("domain"),
                Seg::Index(i),
                Seg::Key(k),
            ]
        };
        if d.name.trim().is_empty() {
            c.push(&path("name"), "the domain name is empty");
        }
        if let Some(first) = m.domains[..i].iter().position(|o| o.name == d.name) {
            c.push(
                &path("name"),
                format!("domain {} is listed twice (first as entry {first})", d.name),
            );
        }
        if d.mode == Some(Export) {
            c.push(
                &path("mode"),
                "mode must be \"live\" or \"offline\": maintenance moves running domains",
            );
        }
    }
}

/// `[host_link]` connection caps and registration deadline.
fn check_link_limits(c: &mut Problems<'_>, link: &super::HostLinkListenSection) {
    let key = |k| [Seg::Key("host_link"), Seg::Key(k)];
    if link.max_connections == 0 {
        c.push(
            &key("max_connections"),
            "max_connections must be at least 1 (every guest linked over TCP holds one)",
        );
    }
    if link.max_per_source == 0 {
        c.push(
            &key("max_per_source"),
            "max_per_source must be at least 1 (a guest links from its own address)",
        );
    } else if link.max_per_source > link.max_connections && link.max_connections > 0 {
        c.push(
            &key("max_per_source"),
            format!(
                "max_per_source ({}) is above max_connections ({}): one address could \
                 take every place; lower it",
                link.max_per_source, link.max_connections
            ),
        );
    }
    if !(1000..=600_000).contains(&link.register_timeout_ms) {
        c.push(
            &key("register_timeout_ms"),
            "register_timeout_ms must be 1000 to 600000",
        );
    }
}
