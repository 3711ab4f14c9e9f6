//! Who a guest on the host link is, as the host establishes it, and which guests it may
//! have killed.
//!
//! A guest's registration is a claim: guest cluster, node name, node id and domain. The
//! key that signs its frames proves the guest cluster only; the rest is checked here
//! against what the host knows by itself:
//! - the guest cluster's members (`[[guest_cluster.member]]` of cluster.toml): the node
//!   name and id must be those of one member, and that member's domain is the guest's;
//! - the channel it came in on: a virtio-serial channel `DOMAIN.sock` belongs to one
//!   domain, so a guest on it is that domain's guest; over TCP, the member's `address`
//!   (when given) must be the connection's source.
//!
//! A guest can then have killed only a member of its own guest cluster, and the kill
//! destroys the domain the host has for that member, never a name a guest gave.

use std::net::IpAddr;

use crate::config::{GuestClusterEntry, GuestMember, NodeId};

/// How a guest's link reached this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Over the virtio-serial channel of domain `domain` (its socket `DOMAIN.sock`).
    Channel {
        /// The domain the channel belongs to.
        domain: String,
    },
    /// Over TCP, from `source`.
    Tcp {
        /// The connection's source address.
        source: IpAddr,
    },
}

/// What a guest's registration says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// Node name.
    pub node: &'a str,
    /// Node id.
    pub node_id: NodeId,
    /// Domain, if the guest gave one.
    pub domain: Option<&'a str>,
}

/// A guest as the host established it: a member of its guest cluster, in its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Guest cluster.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Node id.
    pub node_id: NodeId,
    /// The domain it runs in.
    pub domain: String,
}

/// Why a registration is refused; the wording names the key of cluster.toml to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    /// The guest cluster lists no members at all.
    #[error(
        "guest cluster {cluster} lists no member: add one [[guest_cluster.member]] (node, \
         node_id, domain) per guest to cluster.toml"
    )]
    NoMembers {
        /// The guest cluster.
        cluster: String,
    },
    /// No member has that node name and id.
    #[error(
        "{node} (node {node_id}) is not a member of guest cluster {cluster}: no \
         [[guest_cluster.member]] has that node and node_id"
    )]
    NotMember {
        /// The guest cluster.
        cluster: String,
        /// The node name claimed.
        node: String,
        /// The node id claimed.
        node_id: NodeId,
    },
    /// The member runs in another domain than the one claimed.
    #[error("{node} of {cluster} claims domain {claimed}, but its member entry says {domain}")]
    OtherDomain {
        /// The guest cluster.
        cluster: String,
        /// The node.
        node: String,
        /// The domain claimed.
        claimed: String,
        /// The member's domain.
        domain: String,
    },
    /// The registration came in on another domain's channel.
    #[error("{node} of {cluster} (domain {domain}) registered on the channel of domain {channel}")]
    WrongChannel {
        /// The guest cluster.
        cluster: String,
        /// The node.
        node: String,
        /// The member's domain.
        domain: String,
        /// The domain of the channel it came in on.
        channel: String,
    },
    /// Over TCP, from another address than the member's.
    #[error("{node} of {cluster} linked from {from}, but its member entry says address {address}")]
    WrongAddress {
        /// The guest cluster.
        cluster: String,
        /// The node.
        node: String,
        /// Where the connection came from.
        from: IpAddr,
        /// The member's address.
        address: IpAddr,
    },
}

/// Establishes who a guest of `cluster` (the guest cluster whose key signs its frames)
/// is, from its `claim` and how it `arrived`; refuses any claim the host cannot confirm.
pub fn establish(
    cluster: &GuestClusterEntry,
    arrival: &Arrival,
    claim: Claim<'_>,
) -> Result<Identity, ClaimRefused> {
    let name = &cluster.name;
    if cluster.members.is_empty() {
        return Err(ClaimRefused::NoMembers {
            cluster: name.clone(),
        });
    }
    let member = member(cluster, claim.node_id)
        .filter(|m| m.node == claim.node)
        .ok_or_else(|| ClaimRefused::NotMember {
            cluster: name.clone(),
            node: claim.node.to_string(),
            node_id: claim.node_id,
        })?;
    if let Some(claimed) = claim.domain.filter(|d| *d != member.domain) {
        return Err(ClaimRefused::OtherDomain {
            cluster: name.clone(),
            node: member.node.clone(),
            claimed: claimed.to_string(),
            domain: member.domain.clone(),
        });
    }
    match arrival {
        Arrival::Channel { domain } if *domain != member.domain => {
            return Err(ClaimRefused::WrongChannel {
                cluster: name.clone(),
                node: member.node.clone(),
                domain: member.domain.clone(),
                channel: domain.clone(),
            })
        }
        Arrival::Tcp { source } => {
            if let Some(address) = member.address.filter(|a| !same_address(*a, *source)) {
                return Err(ClaimRefused::WrongAddress {
                    cluster: name.clone(),
                    node: member.node.clone(),
                    from: *source,
                    address,
                });
            }
        }
        Arrival::Channel { .. } => {}
    }
    Ok(Identity {
        cluster: name.clone(),
        node: member.node.clone(),
        node_id: member.node_id,
        domain: member.domain.clone(),
    })
}

/// Why a kill request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillRefused {
    /// The target is of another guest cluster.
    #[error(
        "a guest of {asker} may only ask to kill guests of its own guest cluster, not of {target}"
    )]
    OtherCluster {
        /// The asker's guest cluster.
        asker: String,
        /// The target's.
        target: String,
    },
    /// The asker names itself.
    #[error("a guest cannot ask to kill itself")]
    Itself,
    /// No member of the asker's guest cluster has that node id.
    #[error("node {node_id} is not a member of guest cluster {cluster}")]
    NotMember {
        /// The guest cluster.
        cluster: String,
        /// The node id asked for.
        node_id: NodeId,
    },
}

/// The member of `cluster` (the asker's guest cluster, as configured) that the guest
/// `asker` may have killed when it asks for node `node_id` of `target_cluster`.
pub fn kill_target<'a>(
    cluster: &'a GuestClusterEntry,
    asker: &Identity,
    target_cluster: &str,
    node_id: NodeId,
) -> Result<&'a GuestMember, KillRefused> {
    if target_cluster != asker.cluster || cluster.name != asker.cluster {
        return Err(KillRefused::OtherCluster {
            asker: asker.cluster.clone(),
            target: target_cluster.to_string(),
        });
    }
    if node_id == asker.node_id {
        return Err(KillRefused::Itself);
    }
    member(cluster, node_id).ok_or_else(|| KillRefused::NotMember {
        cluster: cluster.name.clone(),
        node_id,
    })
}

/// Whether a domain found not running on the host asked to destroy it proves its guest
/// dead: only when no host not proved down reports it, it is not being moved, and no
/// guest is linked from it right now (a live link is a living guest).
pub fn not_running_proves_dead(reported_elsewhere: bool, moving: bool, linked_now: bool) -> bool {
    !reported_elsewhere && !moving && !linked_now
}

/// The member of `cluster` with node id `node_id`.
fn member(cluster: &GuestClusterEntry, node_id: NodeId) -> Option<&GuestMember> {
    cluster.members.iter().find(|m| m.node_id == node_id)
}

/// The same host address, an IPv4 one also in its IPv6-mapped form.
fn same_address(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests;
