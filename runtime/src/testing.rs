//! Fixtures for the tests of both agents (feature `testing`): the keys and guest-cluster
//! entries a host-link test needs on either end, and a started agent process.

pub mod process;

use hvcluster_common::config::{cluster_id_of, GuestClusterEntry, GuestMember};

use crate::intake::ClusterKey;
use crate::link::LinkKey;

/// The key bytes of cluster `cluster` in tests.
pub fn cluster_key_bytes(cluster: &str) -> Vec<u8> {
    format!("{cluster}-key-of-thirty-two-bytes!!!").into_bytes()
}

/// The host-link key of guest cluster `cluster`, from [`cluster_key_bytes`].
pub fn link_key(cluster: &str) -> LinkKey {
    LinkKey {
        cluster: cluster.into(),
        key: ClusterKey::new(cluster_key_bytes(cluster)),
        cluster_id: cluster_id_of(cluster),
    }
}

/// Guest cluster `name` as a host's configuration lists it, with `members` given as
/// (node, node id, domain).
pub fn guest_cluster(name: &str, members: &[(&str, u32, &str)]) -> GuestClusterEntry {
    GuestClusterEntry {
        name: name.into(),
        key_file: format!("{name}.key").into(),
        members: members
            .iter()
            .map(|&(node, node_id, domain)| GuestMember {
                node: node.into(),
                node_id,
                domain: domain.into(),
                address: None,
            })
            .collect(),
    }
}
