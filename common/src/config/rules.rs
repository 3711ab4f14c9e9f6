//! Checks shared by `cluster.toml` and `guest.toml`: the cluster name and key, the
//! heartbeat timings, the interconnects and the member entries (`[[host]]` or
//! `[[node]]`).
//!
//! Both files follow the same rules; only some messages are worded for their cluster
//! ([`ClusterKind`]), as the host messages are documented in `docs/configuration.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use super::locate::{display_path, line_of, Seg};
use super::{ConfigProblem, HeartbeatSection, Interconnect, NodeId, MIN_KEY_BYTES};

/// What a valid name is made of, for messages.
pub(crate) const NAME_RULE: &str = "use 1 to 63 letters, digits, '-', '_' or '.'";

/// Whether `s` is a valid cluster, interconnect, member, device or application name.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
}

/// The problems found in one configuration file, each located by its key path.
#[derive(Debug)]
pub(crate) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<ConfigProblem>,
}

impl<'a> Problems<'a> {
    /// An empty list for `text`, read from `file`.
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            problems: Vec::new(),
        }
    }

    /// Records a problem with the key at `path`.
    pub(crate) fn push(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.to_path_buf(),
            line: line_of(self.text, path),
            key: display_path(path),
            message: message.into(),
        });
    }

    /// The problems in file order; those without a line come last.
    pub(crate) fn into_sorted(self) -> Vec<ConfigProblem> {
        let mut problems = self.problems;
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        problems
    }
}

/// The names of a table's entries seen so far: each must be valid and given once.
#[derive(Debug, Default)]
pub(crate) struct EntryNames<'a> {
    seen: BTreeMap<&'a str, usize>,
}

impl<'a> EntryNames<'a> {
    /// Checks the name of entry `i`, whose key is at `path`. `invalid` words the problem
    /// of a name that is not valid, `twice` that of a name an earlier entry has (given
    /// its index).
    pub(crate) fn check(
        &mut self,
        c: &mut Problems<'_>,
        path: &[Seg<'_>],
        (i, name): (usize, &'a str),
        invalid: impl FnOnce() -> String,
        twice: impl FnOnce(usize) -> String,
    ) {
        if !valid_name(name) {
            c.push(path, invalid());
        }
        if let Some(earlier) = self.seen.insert(name, i) {
            c.push(path, twice(earlier));
        }
    }

    /// Whether an entry called `name` was checked.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.seen.contains_key(name)
    }
}

/// Which cluster a file configures, for the wording of the shared checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterKind {
    /// `cluster.toml`: hypervisors in `[[host]]` tables.
    Host,
    /// `guest.toml`: guests in `[[node]]` tables.
    Guest,
}

impl ClusterKind {
    /// What the cluster is called in messages.
    fn cluster(self) -> &'static str {
        match self {
            Self::Host => "cluster",
            Self::Guest => "guest cluster",
        }
    }

    /// The table of the members, which is also what one member is called.
    fn member(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Guest => "node",
        }
    }

    fn no_members(self) -> &'static str {
        match self {
            Self::Host => "no [[host]] is configured; add every hypervisor of the cluster",
            Self::Guest => "no [[node]] is configured; add every guest of the guest cluster",
        }
    }

    fn no_interconnect(self) -> &'static str {
        match self {
            Self::Host => "no [[interconnect]] is configured; add at least one",
            Self::Guest => "no [[interconnect]] is configured; add at least one guest network",
        }
    }

    fn bad_interconnect_name(self, name: &str) -> String {
        match self {
            Self::Host => "not a valid interconnect name".into(),
            Self::Guest => format!("{name:?} is not a valid interconnect name: {NAME_RULE}"),
        }
    }

    fn interconnect_twice(self, name: &str, first: usize) -> String {
        match self {
            Self::Host => format!("interconnect {name:?} is defined twice"),
            Self::Guest => {
                format!("interconnect {name:?} is already defined by interconnect[{first}]")
            }
        }
    }

    fn bad_member_name(self, name: &str) -> String {
        match self {
            Self::Host => format!("{name:?} is not a valid host name"),
            Self::Guest => format!("{name:?} is not a valid node name: {NAME_RULE}"),
        }
    }
}

/// `cluster.name` must be a valid name.
pub(crate) fn check_cluster_name(c: &mut Problems<'_>, kind: ClusterKind, name: &str) {
    if !valid_name(name) {
        c.push(
            &[Seg::Key("cluster"), Seg::Key("name")],
            format!(
                "{name:?} is not a valid {} name: {NAME_RULE}",
                kind.cluster()
            ),
        );
    }
}

/// Reads the key `cluster.key_file` names, as the agents do: trailing line ends do not
/// count. Returns it when it is readable and long enough.
pub(crate) fn check_key(
    c: &mut Problems<'_>,
    kind: ClusterKind,
    key_file: &Path,
) -> Option<Vec<u8>> {
    check_key_at(
        c,
        kind,
        &[Seg::Key("cluster"), Seg::Key("key_file")],
        key_file,
    )
}

/// [`check_key`] for a key named at `path`.
pub(crate) fn check_key_at(
    c: &mut Problems<'_>,
    kind: ClusterKind,
    path: &[Seg<'_>],
    key_file: &Path,
) -> Option<Vec<u8>> {
    match super::read_key_file(key_file) {
        Ok(key) if key.len() < MIN_KEY_BYTES => {
            c.push(
                path,
                format!(
                    "{} holds {} bytes; a {} key needs at least {MIN_KEY_BYTES} \
                     (make one with: head -c 32 /dev/urandom > {} && chmod 600 {})",
                    key_file.display(),
                    key.len(),
                    kind.cluster(),
                    key_file.display(),
                    key_file.display()
                ),
            );
            None
        }
        Ok(key) => Some(key),
        Err(super::KeyFileError::Unreadable { source, .. }) => {
            c.push(
                path,
                format!(
                    "cannot read the {} key {}: {source}",
                    kind.cluster(),
                    key_file.display()
                ),
            );
            None
        }
        Err(e) => {
            c.push(path, format!("the {} key {e}", kind.cluster()));
            None
        }
    }
}

/// `[heartbeat]`: each threshold longer than the one before it.
pub(crate) fn check_heartbeat(c: &mut Problems<'_>, hb: &HeartbeatSection) {
    let key = |k| [Seg::Key("heartbeat"), Seg::Key(k)];
    if hb.interval_ms < 10 {
        c.push(
            &key("interval_ms"),
            format!("{} ms is too short; use at least 10 ms", hb.interval_ms),
        );
    }
    let interval = ("interval_ms", hb.interval_ms);
    check_longer(c, &key("suspect_after_ms"), interval, hb.suspect_after_ms);
    let suspect = ("suspect_after_ms", hb.suspect_after_ms);
    check_longer(c, &key("dead_after_ms"), suspect, hb.dead_after_ms);
    if hb.rejoin_heartbeats == 0 {
        c.push(&key("rejoin_heartbeats"), "must be at least 1");
    }
}

/// The duration at `path`, `ms`, must be longer than the one it follows, named `shorter`.
pub(crate) fn check_longer(
    c: &mut Problems<'_>,
    path: &[Seg<'_>],
    (shorter, shorter_ms): (&str, u64),
    ms: u64,
) {
    if ms <= shorter_ms {
        c.push(
            path,
            format!("must be longer than {shorter} ({shorter_ms} ms), got {ms} ms"),
        );
    }
}

/// `[[interconnect]]`: at least one, valid unique names, usable ports. `extra` runs last
/// for each interconnect, with its index, for checks only one file has.
pub(crate) fn check_interconnects(
    c: &mut Problems<'_>,
    kind: ClusterKind,
    interconnects: &[Interconnect],
    mut extra: impl FnMut(&mut Problems<'_>, usize, &Interconnect),
) {
    if interconnects.is_empty() {
        c.push(&[Seg::Key("interconnect")], kind.no_interconnect());
    }
    let mut names = EntryNames::default();
    for (i, ic) in interconnects.iter().enumerate() {
        let at = |k| [Seg::Key("interconnect"), Seg::Index(i), Seg::Key(k)];
        names.check(
            c,
            &at("name"),
            (i, &ic.name),
            || kind.bad_interconnect_name(&ic.name),
            |first| kind.interconnect_twice(&ic.name, first),
        );
        if ic.port == 0 {
            c.push(&at("port"), "port 0 is not usable");
        }
        extra(c, i, ic);
    }
}

/// The checks every member entry (`[[host]]` or `[[node]]`) shares, and what they have
/// seen so far: names, node ids and addresses must be unique across members.
///
/// Call [`Self::identity`] and then [`Self::addresses`] for each member, in order.
#[derive(Debug)]
pub(crate) struct MemberRules<'a> {
    kind: ClusterKind,
    interconnects: BTreeSet<&'a str>,
    names: EntryNames<'a>,
    ids: BTreeMap<NodeId, (usize, &'a str)>,
    addresses: BTreeMap<IpAddr, usize>,
}

impl<'a> MemberRules<'a> {
    /// Starts the checks of `count` members; there must be at least one.
    pub(crate) fn new(
        c: &mut Problems<'_>,
        kind: ClusterKind,
        interconnects: &'a [Interconnect],
        count: usize,
    ) -> Self {
        if count == 0 {
            c.push(&[Seg::Key(kind.member())], kind.no_members());
        }
        Self {
            kind,
            interconnects: interconnects.iter().map(|i| i.name.as_str()).collect(),
            names: EntryNames::default(),
            ids: BTreeMap::new(),
            addresses: BTreeMap::new(),
        }
    }

    /// Member `i`'s name and node id: valid and not used by an earlier member.
    pub(crate) fn identity(
        &mut self,
        c: &mut Problems<'_>,
        i: usize,
        name: &'a str,
        node_id: NodeId,
    ) {
        let member = self.kind.member();
        let at = |k| [Seg::Key(member), Seg::Index(i), Seg::Key(k)];
        self.names.check(
            c,
            &at("name"),
            (i, name),
            || self.kind.bad_member_name(name),
            |first| format!("{member} name {name:?} is already used by {member}[{first}]"),
        );
        if node_id == 0 {
            c.push(&at("node_id"), "node ids start at 1");
        }
        if let Some((first, first_name)) = self.ids.insert(node_id, (i, name)) {
            c.push(
                &at("node_id"),
                format!("node id {node_id} is already used by {member}[{first}] ({first_name})"),
            );
        }
    }

    /// Member `i`'s `addresses`: one on every interconnect and none on an unknown one,
    /// each usable and not already an address of any member.
    pub(crate) fn addresses(
        &mut self,
        c: &mut Problems<'_>,
        i: usize,
        name: &str,
        addresses: &BTreeMap<String, IpAddr>,
    ) {
        let member = self.kind.member();
        for ic in &self.interconnects {
            if !addresses.contains_key(*ic) {
                c.push(
                    &[Seg::Key(member), Seg::Index(i), Seg::Key("addresses")],
                    format!("{member} {name} has no address on interconnect {ic:?}"),
                );
            }
        }
        for (ic, addr) in addresses {
            let path = [
                Seg::Key(member),
                Seg::Index(i),
                Seg::Key("addresses"),
                Seg::Key(ic),
            ];
            if !self.interconnects.contains(ic.as_str()) {
                c.push(&path, format!("there is no [[interconnect]] named {ic:?}"));
            }
            if addr.is_unspecified() || addr.is_multicast() {
                c.push(&path, format!("{addr} cannot be a {member} address"));
            }
            if let Some(first) = self.addresses.insert(*addr, i) {
                let whose = if first == i {
                    format!("this {member} on another interconnect")
                } else {
                    format!("{member}[{first}]")
                };
                c.push(
                    &path,
                    format!(
                        "{addr} is already an address of {whose}; every interconnect needs its \
                         own address"
                    ),
                );
            }
        }
    }

    /// Claims `addr` for member `i`; returns the member that already had it, if any.
    pub(crate) fn claim_address(&mut self, addr: IpAddr, i: usize) -> Option<usize> {
        self.addresses.insert(addr, i)
    }
}
