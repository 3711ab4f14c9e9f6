//! Semantic checks of a parsed `cluster.toml`, each naming its key and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::locate::{display_path, line_of, Seg};
use super::{ClusterConfig, ConfigProblem, MIN_KEY_BYTES};

struct Collector<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<ConfigProblem>,
}

impl Collector<'_> {
    fn push(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.to_path_buf(),
            line: line_of(self.text, path),
            key: display_path(path),
            message: message.into(),
        });
    }
}

/// Checks `config`; returns the problems and, when readable, the cluster key.
pub(super) fn validate(
    config: &ClusterConfig,
    file: &Path,
    text: &str,
) -> (Vec<ConfigProblem>, Option<Vec<u8>>) {
    let mut c = Collector {
        file,
        text,
        problems: Vec::new(),
    };
    check_name(&mut c, &config.cluster.name);
    let key = check_key(&mut c, config);
    check_heartbeat(&mut c, config);
    check_interconnects(&mut c, config);
    check_hosts(&mut c, config);
    check_watchdog(&mut c, config);
    check_quorum(&mut c, config);
    check_fencing(&mut c, config);
    let mut problems = c.problems;
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    (problems, key)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
}

fn check_name(c: &mut Collector<'_>, name: &str) {
    if !valid_name(name) {
        c.push(
            &[Seg::Key("cluster"), Seg::Key("name")],
            format!("{name:?} is not a valid cluster name: use 1 to 63 letters, digits, '-', '_' or '.'"),
        );
    }
}

fn check_key(c: &mut Collector<'_>, config: &ClusterConfig) -> Option<Vec<u8>> {
    let path = [Seg::Key("cluster"), Seg::Key("key_file")];
    let key_file = &config.cluster.key_file;
    match std::fs::read(key_file) {
        Ok(bytes) => {
            let trimmed = trim_ascii_end(&bytes);
            if trimmed.len() < MIN_KEY_BYTES {
                c.push(
                    &path,
                    format!(
                        "{} holds {} bytes; a cluster key needs at least {MIN_KEY_BYTES} \
                         (make one with: head -c 32 /dev/urandom > {})",
                        key_file.display(),
                        trimmed.len(),
                        key_file.display()
                    ),
                );
                None
            } else {
                Some(trimmed.to_vec())
            }
        }
        Err(e) => {
            c.push(
                &path,
                format!("cannot read the cluster key {}: {e}", key_file.display()),
            );
            None
        }
    }
}

fn trim_ascii_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && (bytes[end - 1] == b'\n' || bytes[end - 1] == b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

fn check_heartbeat(c: &mut Collector<'_>, config: &ClusterConfig) {
    let hb = &config.heartbeat;
    let key = |k| [Seg::Key("heartbeat"), Seg::Key(k)];
    if hb.interval_ms < 10 {
        c.push(
            &key("interval_ms"),
            format!("{} ms is too short; use at least 10 ms", hb.interval_ms),
        );
    }
    if hb.suspect_after_ms <= hb.interval_ms {
        c.push(
            &key("suspect_after_ms"),
            format!(
                "must be longer than interval_ms ({} ms), got {} ms",
                hb.interval_ms, hb.suspect_after_ms
            ),
        );
    }
    if hb.dead_after_ms <= hb.suspect_after_ms {
        c.push(
            &key("dead_after_ms"),
            format!(
                "must be longer than suspect_after_ms ({} ms), got {} ms",
                hb.suspect_after_ms, hb.dead_after_ms
            ),
        );
    }
    if hb.rejoin_heartbeats == 0 {
        c.push(&key("rejoin_heartbeats"), "must be at least 1");
    }
}

fn check_interconnects(c: &mut Collector<'_>, config: &ClusterConfig) {
    if config.interconnects.is_empty() {
        c.push(
            &[Seg::Key("interconnect")],
            "no [[interconnect]] is configured; add at least one",
        );
    }
    let mut names = BTreeSet::new();
    for (i, ic) in config.interconnects.iter().enumerate() {
        if !valid_name(&ic.name) {
            c.push(
                &[Seg::Key("interconnect"), Seg::Index(i), Seg::Key("name")],
                "not a valid interconnect name",
            );
        }
        if !names.insert(ic.name.as_str()) {
            c.push(
                &[Seg::Key("interconnect"), Seg::Index(i), Seg::Key("name")],
                format!("interconnect {:?} is defined twice", ic.name),
            );
        }
        if ic.port == 0 {
            c.push(
                &[Seg::Key("interconnect"), Seg::Index(i), Seg::Key("port")],
                "port 0 is not usable",
            );
        }
        if config.kdump.enabled && ic.port == config.kdump.port {
            c.push(
                &[Seg::Key("interconnect"), Seg::Index(i), Seg::Key("port")],
                format!("port {} is also the kdump notice port", ic.port),
            );
        }
    }
}

fn check_hosts(c: &mut Collector<'_>, config: &ClusterConfig) {
    if config.hosts.is_empty() {
        c.push(
            &[Seg::Key("host")],
            "no [[host]] is configured; add every hypervisor of the cluster",
        );
    }
    let ic_names: BTreeSet<&str> = config
        .interconnects
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids: BTreeMap<u32, usize> = BTreeMap::new();
    let mut addrs: BTreeMap<std::net::IpAddr, usize> = BTreeMap::new();
    for (i, h) in config.hosts.iter().enumerate() {
        let at = |k| [Seg::Key("host"), Seg::Index(i), Seg::Key(k)];
        if !valid_name(&h.name) {
            c.push(
                &at("name"),
                format!("{:?} is not a valid host name", h.name),
            );
        }
        if let Some(first) = names.insert(&h.name, i) {
            c.push(
                &at("name"),
                format!("host name {:?} is already used by host[{first}]", h.name),
            );
        }
        if h.node_id == 0 {
            c.push(&at("node_id"), "node ids start at 1");
        }
        if let Some(first) = ids.insert(h.node_id, i) {
            c.push(
                &at("node_id"),
                format!(
                    "node id {} is already used by host[{first}] ({})",
                    h.node_id, config.hosts[first].name
                ),
            );
        }
        if h.weight == 0 {
            c.push(&at("weight"), "weight must be at least 1");
        }
        for ic in &ic_names {
            if !h.addresses.contains_key(*ic) {
                c.push(
                    &at("addresses"),
                    format!("host {} has no address on interconnect {ic:?}", h.name),
                );
            }
        }
        for (ic, addr) in &h.addresses {
            let path = [
                Seg::Key("host"),
                Seg::Index(i),
                Seg::Key("addresses"),
                Seg::Key(ic),
            ];
            if !ic_names.contains(ic.as_str()) {
                c.push(&path, format!("there is no [[interconnect]] named {ic:?}"));
            }
            if addr.is_unspecified() || addr.is_multicast() {
                c.push(&path, format!("{addr} cannot be a host address"));
            }
            if let Some(first) = addrs.insert(*addr, i) {
                let whose = if first == i {
                    "this host on another interconnect".to_string()
                } else {
                    format!("host[{first}]")
                };
                c.push(&path, format!("{addr} is already an address of {whose}; every interconnect needs its own address"));
            }
        }
        // A panic notice is attributed by its source address: each must name one host.
        for (k, addr) in h.kdump_addresses.iter().enumerate() {
            let path = [
                Seg::Key("host"),
                Seg::Index(i),
                Seg::Key("kdump_addresses"),
                Seg::Index(k),
            ];
            if let Some(first) = addrs.insert(*addr, i) {
                if first != i {
                    c.push(&path, format!("{addr} is already an address of host[{first}]; a panic notice from it would be ambiguous"));
                }
            }
        }
    }
}

fn check_watchdog(c: &mut Collector<'_>, config: &ClusterConfig) {
    let wd = &config.load_watchdog;
    let key = |k| [Seg::Key("load_watchdog"), Seg::Key(k)];
    if wd.interval_ms == 0 {
        c.push(&key("interval_ms"), "must be at least 1 ms");
    }
    if wd.slow_lateness_ms >= wd.hung_lateness_ms {
        c.push(
            &key("hung_lateness_ms"),
            format!(
                "must be longer than slow_lateness_ms ({} ms), got {} ms",
                wd.slow_lateness_ms, wd.hung_lateness_ms
            ),
        );
    }
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

fn check_quorum(c: &mut Collector<'_>, config: &ClusterConfig) {
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

fn check_fencing(c: &mut Collector<'_>, config: &ClusterConfig) {
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
    let mut names = BTreeMap::new();
    for (i, d) in config.fence_devices.iter().enumerate() {
        let at = |k| [Seg::Key("fence_device"), Seg::Index(i), Seg::Key(k)];
        if !valid_name(&d.name) {
            c.push(
                &at("name"),
                format!("{:?} is not a valid device name", d.name),
            );
        }
        if let Some(first) = names.insert(d.name.as_str(), i) {
            c.push(
                &at("name"),
                format!(
                    "device {:?} is already defined by fence_device[{first}]",
                    d.name
                ),
            );
        }
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
                if !names.contains_key(name.as_str()) {
                    c.push(&at, format!("fence level {} of {} names {name:?}, which no [[fence_device]] defines", l + 1, h.name));
                }
            }
        }
    }
}
