//! Checks of the `[[application.resource]]` entries (guest.toml or cluster.toml), by type.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::Members;
use crate::config::guest::{CmdlineFlag, ResourceConfig, ResourceKind, DEFAULT_OCF_ROOT};
use crate::config::locate::Seg;
use crate::config::rules::{valid_name, Problems};

/// Checks the keys of `application[a].resource[r]` that depend on its type; `vips`
/// holds where each virtual address seen so far is brought up.
pub(super) fn check(
    c: &mut Problems<'_>,
    members: &Members<'_>,
    (a, r): (usize, usize),
    res: &ResourceConfig,
    vips: &mut BTreeMap<IpAddr, (usize, usize)>,
) {
    let mut rc = ResourceCheck { c, a, r };
    rc.foreign_fields(res);
    rc.timings(res);
    match res.kind {
        ResourceKind::Cmdline => rc.cmdline(res),
        ResourceKind::Ocf => rc.ocf(res),
        ResourceKind::Vip => {
            if let Some(ip) = rc.vip(res) {
                vip_unique(c, members, ip, (a, r), vips);
            }
        }
    }
}

/// Checks of one resource, `application[a].resource[r]`.
struct ResourceCheck<'c, 'a> {
    c: &'c mut Problems<'a>,
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
    c: &mut Problems<'_>,
    members: &Members<'_>,
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
    for (name, addresses) in &members.list {
        if let Some((ic, _)) = addresses.iter().find(|(_, addr)| **addr == ip) {
            c.push(
                &path,
                format!(
                    "{ip} is {} {name}'s address on interconnect {ic:?}; a virtual address must \
                     be one no {} owns",
                    members.table, members.table
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
