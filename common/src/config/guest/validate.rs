//! Semantic checks of a parsed `guest.toml`, each naming its key and line.
//!
//! The rules shared with `cluster.toml` (cluster name, key, heartbeat timings,
//! interconnects, node entries) are in [`crate::config::rules`], worded for guests;
//! the checks of each resource type are in [`resources`].

mod resources;

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{ApplicationConfig, GuestConfig, HostLinkTransport, DEFAULT_HOST_LINK_PORT};
use crate::config::locate::Seg;
use crate::config::rules::{self, ClusterKind, EntryNames, MemberRules, Problems, NAME_RULE};

const KIND: ClusterKind = ClusterKind::Guest;

/// Adds the problems of `config` to `c`; returns the guest cluster key when it is readable.
pub(super) fn validate(config: &GuestConfig, c: &mut Problems<'_>) -> Option<Vec<u8>> {
    rules::check_cluster_name(c, KIND, &config.cluster.name);
    let key = rules::check_key(c, KIND, &config.cluster.key_file);
    rules::check_heartbeat(c, &config.heartbeat);
    rules::check_interconnects(c, KIND, &config.interconnects, |_, _, _| {});
    check_nodes(c, config);
    check_host_link(c, config);
    let members = Members {
        table: "node",
        list: config
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), &n.addresses))
            .collect(),
    };
    check_applications(c, &config.applications, &members);
    key
}

/// The cluster members applications may name: the `[[node]]` entries of a guest cluster
/// or the `[[host]]` entries of the host cluster, with their interconnect addresses.
pub(crate) struct Members<'a> {
    /// The table they are configured in (`node` or `host`), for messages.
    pub table: &'static str,
    /// Name and addresses by interconnect of each.
    pub list: Vec<(&'a str, &'a BTreeMap<String, IpAddr>)>,
}

fn check_nodes(c: &mut Problems<'_>, config: &GuestConfig) {
    let mut rules = MemberRules::new(c, KIND, &config.interconnects, config.nodes.len());
    for (i, n) in config.nodes.iter().enumerate() {
        rules.identity(c, i, &n.name, n.node_id);
        if n.domain.as_deref().is_some_and(|d| d.trim().is_empty()) {
            c.push(
                &[Seg::Key("node"), Seg::Index(i), Seg::Key("domain")],
                "is empty; name the libvirt domain or remove the key to use the node name",
            );
        }
        rules.addresses(c, i, &n.name, &n.addresses);
    }
}

fn check_host_link(c: &mut Problems<'_>, config: &GuestConfig) {
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
        // Guests of one cluster may reach their hosts at different addresses: then
        // each agent is given its own with --host-link-address.
        let optional = field == "address" && transport == "tcp";
        if wanted && !present && !optional {
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
    check_host_public_key(c, transport, link.host_public_key.as_deref());
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

/// Without the hosts' public key a guest could not tell its host from a partner holding
/// the same guest cluster key: a link is refused rather than run unchecked.
fn check_host_public_key(c: &mut Problems<'_>, transport: &str, key: Option<&str>) {
    let at = [Seg::Key("host_link"), Seg::Key("host_public_key")];
    match key.map(str::parse::<crate::hostseal::HostPublicKey>) {
        None => c.push(
            &at,
            format!(
                "transport = {transport:?} needs host_public_key, the hosts' key that signs                  what they tell guests: run `hvctl config host-link-key                  /etc/hvcluster/cluster.toml` on a host and add host_public_key =                  \"ed25519:...\" as it prints"
            ),
        ),
        Some(Err(e)) => c.push(&at, format!("{:?} {e}", key.unwrap_or_default())),
        Some(Ok(_)) => {}
    }
}

/// The `[[application]]` entries of either configuration file: names, nodes, budgets
/// and every resource.
pub(crate) fn check_applications(
    c: &mut Problems<'_>,
    applications: &[ApplicationConfig],
    members: &Members<'_>,
) {
    let mut names = EntryNames::default();
    // Where each virtual address is brought up, to catch two resources claiming one.
    let mut vips: BTreeMap<IpAddr, (usize, usize)> = BTreeMap::new();
    for (a, app) in applications.iter().enumerate() {
        let at = |k| [Seg::Key("application"), Seg::Index(a), Seg::Key(k)];
        names.check(
            c,
            &at("name"),
            (a, &app.name),
            || {
                format!(
                    "{:?} is not a valid application name: {NAME_RULE}",
                    app.name
                )
            },
            |first| {
                format!(
                    "application {:?} is already defined by application[{first}]",
                    app.name
                )
            },
        );
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
            if !members.list.iter().any(|(name, _)| name == node) {
                c.push(
                    &path,
                    format!("there is no [[{}]] named {node:?}", members.table),
                );
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
        let mut res_names = EntryNames::default();
        for (r, res) in app.resources.iter().enumerate() {
            let name_at = [
                Seg::Key("application"),
                Seg::Index(a),
                Seg::Key("resource"),
                Seg::Index(r),
                Seg::Key("name"),
            ];
            res_names.check(
                c,
                &name_at,
                (r, &res.name),
                || format!("{:?} is not a valid resource name: {NAME_RULE}", res.name),
                |first| {
                    format!(
                        "resource {:?} is already defined by resource[{first}] of this \
                         application",
                        res.name
                    )
                },
            );
            resources::check(c, members, (a, r), res, &mut vips);
        }
    }
}
