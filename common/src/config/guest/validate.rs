//! Semantic checks of a parsed `guest.toml`, each naming its key and line.
//!
//! The rules shared with `cluster.toml` (cluster name, key, heartbeat timings,
//! interconnects, node entries) are the host validator's, worded for guests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{
    CmdlineFlag, GuestConfig, HostLinkTransport, ResourceConfig, ResourceKind,
    DEFAULT_HOST_LINK_PORT, DEFAULT_OCF_ROOT,
};
use crate::config::locate::{display_path, line_of, Seg};
use crate::config::{ConfigProblem, MIN_KEY_BYTES};

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

/// Checks `config`; returns the problems and, when readable, the guest cluster key.
pub(super) fn validate(
    config: &GuestConfig,
    path: &Path,
    text: &str,
) -> (Vec<ConfigProblem>, Option<Vec<u8>>) {
    let mut c = Collector {
        file: path,
        text,
        problems: Vec::new(),
    };
    check_name(&mut c, &config.cluster.name);
    let key = check_key(&mut c, &config.cluster.key_file);
    check_heartbeat(&mut c, config);
    check_interconnects(&mut c, config);
    check_nodes(&mut c, config);
    check_host_link(&mut c, config);
    check_applications(&mut c, config);
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

const NAME_RULE: &str = "use 1 to 63 letters, digits, '-', '_' or '.'";

fn check_name(c: &mut Collector<'_>, name: &str) {
    if !valid_name(name) {
        c.push(
            &[Seg::Key("cluster"), Seg::Key("name")],
            format!("{name:?} is not a valid guest cluster name: {NAME_RULE}"),
        );
    }
}

/// Reads the key as the host agent does: trailing line ends do not count.
fn check_key(c: &mut Collector<'_>, key_file: &Path) -> Option<Vec<u8>> {
    let path = [Seg::Key("cluster"), Seg::Key("key_file")];
    match std::fs::read(key_file) {
        Ok(bytes) => {
            let trimmed = trim_line_ends(&bytes);
            if trimmed.len() < MIN_KEY_BYTES {
                c.push(
                    &path,
                    format!(
                        "{} holds {} bytes; a guest cluster key needs at least {MIN_KEY_BYTES} \
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
                format!(
                    "cannot read the guest cluster key {}: {e}",
                    key_file.display()
                ),
            );
            None
        }
    }
}

fn trim_line_ends(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && (bytes[end - 1] == b'\n' || bytes[end - 1] == b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

fn check_heartbeat(c: &mut Collector<'_>, config: &GuestConfig) {
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

fn check_interconnects(c: &mut Collector<'_>, config: &GuestConfig) {
    if config.interconnects.is_empty() {
        c.push(
            &[Seg::Key("interconnect")],
            "no [[interconnect]] is configured; add at least one guest network",
        );
    }
    let mut names = BTreeMap::new();
    for (i, ic) in config.interconnects.iter().enumerate() {
        let at = |k| [Seg::Key("interconnect"), Seg::Index(i), Seg::Key(k)];
        if !valid_name(&ic.name) {
            c.push(
                &at("name"),
                format!(
                    "{:?} is not a valid interconnect name: {NAME_RULE}",
                    ic.name
                ),
            );
        }
        if let Some(first) = names.insert(ic.name.as_str(), i) {
            c.push(
                &at("name"),
                format!(
                    "interconnect {:?} is already defined by interconnect[{first}]",
                    ic.name
                ),
            );
        }
        if ic.port == 0 {
            c.push(&at("port"), "port 0 is not usable");
        }
    }
}

fn check_nodes(c: &mut Collector<'_>, config: &GuestConfig) {
    if config.nodes.is_empty() {
        c.push(
            &[Seg::Key("node")],
            "no [[node]] is configured; add every guest of the guest cluster",
        );
    }
    let ic_names: BTreeSet<&str> = config
        .interconnects
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids: BTreeMap<u32, usize> = BTreeMap::new();
    let mut addrs: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (i, n) in config.nodes.iter().enumerate() {
        let at = |k| [Seg::Key("node"), Seg::Index(i), Seg::Key(k)];
        if !valid_name(&n.name) {
            c.push(
                &at("name"),
                format!("{:?} is not a valid node name: {NAME_RULE}", n.name),
            );
        }
        if let Some(first) = names.insert(&n.name, i) {
            c.push(
                &at("name"),
                format!("node name {:?} is already used by node[{first}]", n.name),
            );
        }
        if n.node_id == 0 {
            c.push(&at("node_id"), "node ids start at 1");
        }
        if let Some(first) = ids.insert(n.node_id, i) {
            c.push(
                &at("node_id"),
                format!(
                    "node id {} is already used by node[{first}] ({})",
                    n.node_id, config.nodes[first].name
                ),
            );
        }
        if n.domain.as_deref().is_some_and(|d| d.trim().is_empty()) {
            c.push(
                &at("domain"),
                "is empty; name the libvirt domain or remove the key to use the node name",
            );
        }
        for ic in &ic_names {
            if !n.addresses.contains_key(*ic) {
                c.push(
                    &at("addresses"),
                    format!("node {} has no address on interconnect {ic:?}", n.name),
                );
            }
        }
        for (ic, addr) in &n.addresses {
            let path = [
                Seg::Key("node"),
                Seg::Index(i),
                Seg::Key("addresses"),
                Seg::Key(ic),
            ];
            if !ic_names.contains(ic.as_str()) {
                c.push(&path, format!("there is no [[interconnect]] named {ic:?}"));
            }
            if addr.is_unspecified() || addr.is_multicast() {
                c.push(&path, format!("{addr} cannot be a node address"));
            }
            if let Some(first) = addrs.insert(*addr, i) {
                let whose = if first == i {
                    "this node on another interconnect".to_string()
                } else {
                    format!("node[{first}]")
                };
                c.push(
                    &path,
                    format!(
                        "{addr} is already an address of {whose}; every interconnect needs its own address"
                    ),
                );
            }
        }
    }
}

fn check_host_link(c: &mut Collector<'_>, config: &GuestConfig) {
    let link = &config.host_link;
    let at = |k| [Seg::Key("host_link"), Seg::Key(k)];
    let (transport, wants) = match link.transport {
        HostLinkTransport::None => ("none", [false, false, false]),
        HostLinkTransport::Tcp => ("tcp", [true, true, false]),
        HostLinkTransport::Vsock => ("vsock", [false, true, false]),
        HostLinkTransport::VirtioSerial => ("virtio-serial", [false, false, true]),
    };
    let given = [
        ("address", link.address.is_some()),
        ("port", link.port.is_some()),
        ("device", link.device.is_some()),
    ];
    for ((field, present), wanted) in given.into_iter().zip(wants) {
        if wanted && !present {
            let hint = match field {
                "address" => "the host agent's address, e.g. address = \"192.0.2.1\"".to_string(),
                "port" => format!("the host agent's port, e.g. port = {DEFAULT_HOST_LINK_PORT}"),
                _ => "the guest's virtio-serial port, e.g. device = \"/dev/virtio-ports/org.hvcluster.0\"".to_string(),
            };
            c.push(
                &at(field),
                format!("transport = {transport:?} needs {field}: add {hint}"),
            );
        } else if present && !wanted {
            c.push(
                &at(field),
                format!(
                    "{field} is not used with transport = {transport:?}; remove it or set the \
                     transport that uses it"
                ),
            );
        }
    }
    if !wants.contains(&true) {
        return;
    }
    if let Some(addr) = link
        .address
        .filter(|a| a.is_unspecified() || a.is_multicast())
    {
        c.push(
            &at("address"),
            format!("{addr} cannot be the host agent's address"),
        );
    }
    if link.port == Some(0) {
        c.push(&at("port"), "port 0 is not usable");
    }
    if let Some(dev) = link.device.as_deref().filter(|d| !d.is_absolute()) {
        c.push(
            &at("device"),
            format!("{} is not an absolute path", dev.display()),
        );
    }
}

fn check_applications(c: &mut Collector<'_>, config: &GuestConfig) {
    let mut names = BTreeMap::new();
    // Where each virtual address is brought up, to catch two resources claiming one.
    let mut vips: BTreeMap<IpAddr, (usize, usize)> = BTreeMap::new();
    for (a, app) in config.applications.iter().enumerate() {
        let at = |k| [Seg::Key("application"), Seg::Index(a), Seg::Key(k)];
        if !valid_name(&app.name) {
            c.push(
                &at("name"),
                format!(
                    "{:?} is not a valid application name: {NAME_RULE}",
                    app.name
                ),
            );
        }
        if let Some(first) = names.insert(app.name.as_str(), a) {
            c.push(
                &at("name"),
                format!(
                    "application {:?} is already defined by application[{first}]",
                    app.name
                ),
            );
        }
        if app.nodes.is_empty() {
            c.push(
                &at("nodes"),
                "names no node; list the nodes it may run on, most preferred first",
            );
        }
        let mut seen = BTreeMap::new();
        for (k, node) in app.nodes.iter().enumerate() {
            let path = [
                Seg::Key("application"),
                Seg::Index(a),
                Seg::Key("nodes"),
                Seg::Index(k),
            ];
            if config.node(node).is_none() {
                c.push(&path, format!("there is no [[node]] named {node:?}"));
            }
            if let Some(first) = seen.insert(node.as_str(), k) {
                c.push(
                    &path,
                    format!("{node:?} is already listed as nodes[{first}]"),
                );
            }
        }
        if app.restart_limit > 0 && app.restart_window_s == 0 {
            c.push(
                &at("restart_window_s"),
                format!(
                    "must be at least 1 second when restart_limit is {}: restarts are counted \
                     within this window",
                    app.restart_limit
                ),
            );
        }
        if app.resources.is_empty() {
            c.push(
                &at("resource"),
                format!(
                    "application {} has no [[application.resource]]; add at least one",
                    app.name
                ),
            );
        }
        let mut res_names = BTreeMap::new();
        for (r, res) in app.resources.iter().enumerate() {
            let rat = |k| {
                [
                    Seg::Key("application"),
                    Seg::Index(a),
                    Seg::Key("resource"),
                    Seg::Index(r),
                    Seg::Key(k),
                ]
            };
            if !valid_name(&res.name) {
                c.push(
                    &rat("name"),
                    format!("{:?} is not a valid resource name: {NAME_RULE}", res.name),
                );
            }
            if let Some(first) = res_names.insert(res.name.as_str(), r) {
                c.push(
                    &rat("name"),
                    format!(
                        "resource {:?} is already defined by resource[{first}] of this application",
                        res.name
                    ),
                );
            }
            let mut rc = ResourceCheck { c, a, r };
            rc.foreign_fields(res);
            rc.timings(res);
            match res.kind {
                ResourceKind::Cmdline => rc.cmdline(res),
                ResourceKind::Ocf => rc.ocf(res),
                ResourceKind::Vip => {
                    if let Some(ip) = rc.vip(res) {
                        vip_unique(c, config, ip, (a, r), &mut vips);
                    }
                }
            }
        }
    }
}

/// Checks of one resource, `application[a].resource[r]`.
struct ResourceCheck<'c, 'a> {
    c: &'c mut Collector<'a>,
    a: usize,
    r: usize,
}

impl ResourceCheck<'_, '_> {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.push_at(&[Seg::Key(field)], message);
    }

    fn push_at(&mut self, rest: &[Seg<'_>], message: impl Into<String>) {
        let mut path = vec![
            Seg::Key("application"),
            Seg::Index(self.a),
            Seg::Key("resource"),
            Seg::Index(self.r),
        ];
        path.extend_from_slice(rest);
        self.c.push(&path, message);
    }

    /// A key of another resource type would be silently ignored: refuse it.
    fn foreign_fields(&mut self, res: &ResourceConfig) {
        let given = [
            ("start", res.start.is_some(), ResourceKind::Cmdline),
            ("stop", res.stop.is_some(), ResourceKind::Cmdline),
            ("check", res.check.is_some(), ResourceKind::Cmdline),
            ("flags", !res.flags.is_empty(), ResourceKind::Cmdline),
            ("agent", res.agent.is_some(), ResourceKind::Ocf),
            ("ocf_root", res.ocf_root.is_some(), ResourceKind::Ocf),
            ("params", !res.params.is_empty(), ResourceKind::Ocf),
            ("address", res.address.is_some(), ResourceKind::Vip),
            ("interface", res.interface.is_some(), ResourceKind::Vip),
        ];
        for (field, present, owner) in given {
            if present && owner != res.kind {
                self.push(
                    field,
                    format!(
                        "{field} only applies to type = {:?} resources, not {:?}; remove it",
                        kind_name(owner),
                        kind_name(res.kind)
                    ),
                );
            }
        }
    }

    fn timings(&mut self, res: &ResourceConfig) {
        let given = [
            ("start_timeout_s", res.start_timeout_s),
            ("stop_timeout_s", res.stop_timeout_s),
            ("check_timeout_s", res.check_timeout_s),
            ("check_interval_s", res.check_interval_s),
        ];
        for (field, value) in given {
            if value == Some(0) {
                self.push(
                    field,
                    "must be at least 1 second; remove the key to use the default",
                );
            }
        }
    }

    fn cmdline(&mut self, res: &ResourceConfig) {
        let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
        if blank(&res.start) {
            self.push(
                "start",
                "a cmdline resource needs a start command, e.g. start = \"/usr/local/bin/myapp start\"",
            );
        }
        if blank(&res.stop) {
            self.push(
                "stop",
                "a cmdline resource needs a stop command that also succeeds when it is already stopped",
            );
        }
        let null_detector = res.flags.contains(&CmdlineFlag::NullDetector);
        if null_detector {
            if res.check.is_some() {
                self.push(
                    "check",
                    "NULLDETECTOR means the resource has no check command; remove check or the flag",
                );
            }
            for (field, value) in [
                ("check_timeout_s", res.check_timeout_s),
                ("check_interval_s", res.check_interval_s),
            ] {
                if value.is_some() {
                    self.push(
                        field,
                        "is not used: NULLDETECTOR resources are never checked; remove it",
                    );
                }
            }
        } else if blank(&res.check) {
            self.push(
                "check",
                "a cmdline resource needs a check command (or flags = [\"NULLDETECTOR\"] to leave it unmonitored)",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, flag) in res.flags.iter().enumerate() {
            if let Some(first) = seen.insert(format!("{flag:?}"), i) {
                self.push_at(
                    &[Seg::Key("flags"), Seg::Index(i)],
                    format!("this flag is already given as flags[{first}]"),
                );
            }
        }
    }

    fn ocf(&mut self, res: &ResourceConfig) {
        let root = res
            .ocf_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OCF_ROOT));
        if !root.is_absolute() {
            self.push(
                "ocf_root",
                format!("{} is not an absolute path", root.display()),
            );
            return;
        }
        let Some(agent) = res.agent.as_deref() else {
            self.push(
                "agent",
                "an ocf resource needs its agent as PROVIDER/TYPE, e.g. agent = \"heartbeat/Dummy\"",
            );
            return;
        };
        let part_ok = |p: &str| valid_name(p) && p != "." && p != "..";
        let Some((provider, kind)) = agent
            .split_once('/')
            .filter(|(p, t)| part_ok(p) && part_ok(t))
        else {
            self.push(
                "agent",
                format!("{agent:?} is not PROVIDER/TYPE, e.g. \"heartbeat/Dummy\""),
            );
            return;
        };
        let file = root.join("resource.d").join(provider).join(kind);
        if let Err(why) = executable_file(&file) {
            self.push(
                "agent",
                format!(
                    "the agent {} {why}; install it (e.g. the resource-agents package) or set ocf_root",
                    file.display()
                ),
            );
        }
        for name in res.params.keys() {
            if !shell_identifier(name) {
                self.push_at(
                    &[Seg::Key("params"), Seg::Key(name)],
                    format!(
                        "{name:?} cannot be passed as OCF_RESKEY_{name}: use letters, digits and \
                         '_', not starting with a digit"
                    ),
                );
            }
        }
    }

    /// Returns the address when it is valid.
    fn vip(&mut self, res: &ResourceConfig) -> Option<IpAddr> {
        if res.interface.as_deref().is_none_or(|i| i.trim().is_empty()) {
            self.push(
                "interface",
                "a vip resource needs the interface to bring it up on, e.g. interface = \"eth0\"",
            );
        } else if let Some(ifname) = res.interface.as_deref().filter(|i| !interface_name(i)) {
            self.push(
                "interface",
                format!(
                    "{ifname:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
                ),
            );
        }
        let Some(address) = res.address.as_deref() else {
            self.push(
                "address",
                "a vip resource needs its address with a prefix length, e.g. address = \"198.18.32.200/24\"",
            );
            return None;
        };
        match parse_cidr(address) {
            Ok(ip) => Some(ip),
            Err(why) => {
                self.push("address", why);
                None
            }
        }
    }
}

fn vip_unique(
    c: &mut Collector<'_>,
    config: &GuestConfig,
    ip: IpAddr,
    (a, r): (usize, usize),
    vips: &mut BTreeMap<IpAddr, (usize, usize)>,
) {
    let path = [
        Seg::Key("application"),
        Seg::Index(a),
        Seg::Key("resource"),
        Seg::Index(r),
        Seg::Key("address"),
    ];
    if let Some((fa, fr)) = vips.insert(ip, (a, r)) {
        c.push(
            &path,
            format!("{ip} is already brought up by application[{fa}].resource[{fr}]"),
        );
    }
    for n in &config.nodes {
        if let Some((ic, _)) = n.addresses.iter().find(|(_, addr)| **addr == ip) {
            c.push(
                &path,
                format!(
                    "{ip} is node {}'s address on interconnect {ic:?}; a virtual address must be \
                     one no node owns",
                    n.name
                ),
            );
        }
    }
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Cmdline => "cmdline",
        ResourceKind::Ocf => "ocf",
        ResourceKind::Vip => "vip",
    }
}

/// Whether `s` can follow `OCF_RESKEY_` in an environment variable a shell can read.
fn shell_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// A Linux interface name (IFNAMSIZ is 16 with the terminating NUL).
fn interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace())
}

/// Parses `ADDRESS/PREFIX` as `ip addr add` takes it for a virtual address.
fn parse_cidr(s: &str) -> Result<IpAddr, String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!(
            "{s:?} has no prefix length; write it as ADDRESS/PREFIX, e.g. \"198.18.32.200/24\""
        ));
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if (1..=max).contains(&p) => {}
        _ => {
            return Err(format!(
                "{prefix:?} is not a prefix length for {ip}: use 1 to {max}"
            ))
        }
    }
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!("{ip} cannot be a virtual address"));
    }
    Ok(ip)
}

/// Ok when `file` is a regular file someone may execute; else why not.
fn executable_file(file: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot be used: {e}"))?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("is not executable (chmod +x it)".into());
        }
    }
    Ok(())
}
