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
                ForgeKind::Recorded => unreachable!("recorded frames are played by replay()"),
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

/// Heartbeats as a host sent them at one moment, signed with the cluster key: what an
/// attacker on the interconnect records, to play later.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The host recorded.
    pub host: String,
    frames: Vec<Vec<u8>>,
}

/// How many frames a recording holds (sequence numbers 1 on).
const RECORDED: u64 = 1_000;

/// Records the heartbeats `host` sends now on its first interconnect.
pub fn record(cluster: &LabCluster, host: &str) -> anyhow::Result<Recording> {
    use hvcluster_common::config::ClusterConfig;
    use hvcluster_common::membership::{Heartbeat, PeerView};
    let status = cluster.status(host)?;
    let digest = ClusterConfig::load(&cluster.config_path)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .digest;
    let heartbeat = Heartbeat {
        interconnect: 0,
        quorate: status.quorum.quorate,
        votes: status.quorum.votes,
        config_digest: digest,
        view: status
            .hosts
            .iter()
            .filter(|h| !h.local)
            .map(|h| PeerView {
                node: h.node_id,
                incarnation: h.incarnation.unwrap_or(0),
                state: h.state,
            })
            .collect(),
        ..Heartbeat::default()
    };
    let payload = postcard::to_allocvec(&heartbeat).context("encoding the heartbeat")?;
    let cluster_id = cluster_id_of(&format!("lab-{}", cluster.lab.id()));
    let frames = (1..=RECORDED)
        .map(|sequence| {
            let header = Header {
                kind: Kind::Heartbeat,
                cluster_id,
                sender: status.node_id,
                incarnation: status.incarnation,
                sequence,
            };
            wire::encode(&header, &payload, &cluster.key).expect("a heartbeat fits a frame")
        })
        .collect();
    Ok(Recording {
        host: host.to_string(),
        frames,
    })
}

/// Plays `count` frames of `recording` to `to`'s first interconnect from the rogue
/// namespace with the recorded host's own address as their source (so they pass the
/// agents' source filter and meet the freshness check), one every 100 ms, on a thread
/// of its own (it ends with the lab).
pub fn replay(
    cluster: &LabCluster,
    to: &str,
    recording: &Recording,
    count: u32,
) -> anyhow::Result<()> {
    let target = SocketAddr::new(cluster.address(to, 0), heartbeat_port(0));
    let from = SocketAddr::new(cluster.address(&recording.host, 0), heartbeat_port(0));
    let (from, target) = (super::flood::v4(from)?, super::flood::v4(target)?);
    let path = cluster.lab.netns_path(&crate::lab::NsTarget::Rogue)?;
    let frames: Vec<Vec<u8>> = recording
        .frames
        .iter()
        .take(count as usize)
        .cloned()
        .collect();
    std::thread::spawn(move || {
        let _ = crate::lab::spawn::in_netns(&path, move || -> std::io::Result<()> {
            let spoofer = super::flood::Spoofer::new()?;
            for f in &frames {
                spoofer.send(from, target, f)?;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(())
        });
    });
    Ok(())
}
