//! Forged frames, sent from the lab's rogue namespace with the source address of the host
//! they impersonate, to check that agents drop and count them and stay healthy.

use std::net::SocketAddr;

use anyhow::Context;
use hvcluster_common::config::cluster_id_of;
use hvcluster_common::wire::{self, Header, Kind};

use super::spec::ForgeKind;
use crate::cluster::{heartbeat_port, LabCluster};

/// Sends `count` frames of `kind` to `to`'s first interconnect.
pub fn send(cluster: &LabCluster, to: &str, kind: ForgeKind, count: u32) -> anyhow::Result<()> {
    let target = SocketAddr::new(cluster.address(to, 0), heartbeat_port(0));
    // Impersonate another member, with its real incarnation where that matters.
    let victim = cluster
        .hosts()
        .into_iter()
        .find(|h| h != to)
        .context("no other host to impersonate")?;
    let victim_status = cluster.status(&victim)?;
    let cluster_id = cluster_id_of(&format!("lab-{}", cluster.lab.id()));
    let frames: Vec<Vec<u8>> = (0..count as u64)
        .map(|i| {
            let mut header = Header {
                kind: Kind::Heartbeat,
                cluster_id,
                sender: victim_status.node_id,
                incarnation: victim_status.incarnation,
                sequence: 1 + i,
            };
            match kind {
                ForgeKind::BadKey => {
                    wire::encode(&header, b"forged", b"not the cluster key at all")
                }
                ForgeKind::Replay => wire::encode(&header, b"replayed", &cluster.key),
                ForgeKind::OldIncarnation => {
                    header.incarnation -= 1;
                    header.sequence = 1_000_000 + i;
                    wire::encode(&header, b"old", &cluster.key)
                }
                ForgeKind::ForeignCluster => {
                    header.cluster_id ^= 0xdead_beef;
                    wire::encode(&header, b"foreign", &cluster.key)
                }
                ForgeKind::Garbage => Ok((0..64u64)
                    .map(|b| (b.wrapping_mul(31).wrapping_add(i)) as u8)
                    .collect()),
            }
            .expect("small payloads always encode")
        })
        .collect();
    // From the impersonated host's own address: a forger on the interconnect can spoof
    // it, and the agents drop anything from an address of no host before looking further.
    let from = SocketAddr::new(cluster.address(&victim, 0), heartbeat_port(0));
    super::flood::send_spoofed(cluster, from, target, frames)
}
