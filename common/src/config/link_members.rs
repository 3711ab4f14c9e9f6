//! `[[guest_cluster.member]]`: the guests each guest cluster has, and their domains.

use std::collections::BTreeMap;

use super::locate::Seg;
use super::rules::Problems;
use super::ClusterConfig;

/// Whether `s` may name a node or domain on the host link (it ends up in commands the
/// host runs): 1 to 128 letters, digits, `.`, `-`, `_`.
pub fn valid_link_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Every guest cluster lists its members; names, node ids and domains are valid and
/// unique (a domain belongs to one member of one guest cluster).
pub(super) fn check(c: &mut Problems<'_>, config: &ClusterConfig) {
    let mut domains: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, g) in config.guest_clusters.iter().enumerate() {
        if g.members.is_empty() {
            c.push(
                &[Seg::Key("guest_cluster"), Seg::Index(i), Seg::Key("name")],
                format!(
                    "guest cluster {} lists no member: add one [[guest_cluster.member]] \
                     (node, node_id, domain) per guest, or none of its guests can link",
                    g.name
                ),
            );
        }
        let mut nodes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ids: BTreeMap<u32, usize> = BTreeMap::new();
        for (j, m) in g.members.iter().enumerate() {
            let at = |k| {
                [
                    Seg::Key("guest_cluster"),
                    Seg::Index(i),
                    Seg::Key("member"),
                    Seg::Index(j),
                    Seg::Key(k),
                ]
            };
            if !valid_link_name(&m.node) {
                c.push(
                    &at("node"),
                    format!("{:?} is not a valid node name: use 1 to 128 letters, digits, '.', '-' or '_'", m.node),
                );
            }
            if let Some(first) = nodes.insert(&m.node, j) {
                c.push(
                    &at("node"),
                    format!("node {} is already member[{first}] of {}", m.node, g.name),
                );
            }
            if m.node_id == 0 {
                c.push(&at("node_id"), "node_id must be at least 1");
            }
            if let Some(first) = ids.insert(m.node_id, j) {
                c.push(
                    &at("node_id"),
                    format!(
                        "node_id {} is already that of member[{first}] of {}",
                        m.node_id, g.name
                    ),
                );
            }
            if !valid_link_name(&m.domain) {
                c.push(
                    &at("domain"),
                    format!("{:?} is not a valid domain name: use 1 to 128 letters, digits, '.', '-' or '_'", m.domain),
                );
            }
            if let Some((gi, mj)) = domains.insert(&m.domain, (i, j)) {
                c.push(
                    &at("domain"),
                    format!(
                        "domain {} is already that of guest_cluster[{gi}].member[{mj}]: a domain \
                         runs one guest",
                        m.domain
                    ),
                );
            }
        }
    }
}
