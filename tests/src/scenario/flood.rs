//! Hostile datagrams from the lab's rogue namespace: UDP with a spoofed source address
//! (a raw socket, so a forger on an interconnect can claim to be a host), and bounded
//! floods at the heartbeat ports. Every packet goes to a lab address from inside the
//! lab's rogue namespace.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::config::cluster_id_of;
use hvcluster_common::wire::{self, Header, Kind};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::cluster::{heartbeat_port, LabCluster};
use crate::lab::NsTarget;

/// Longest flood a step may ask for.
pub const MAX_FLOOD_MS: u64 = 10_000;
/// Highest rate a step may ask for, datagrams per second.
pub const MAX_FLOOD_RATE: u64 = 100_000;

/// A raw IPv4 socket that sends UDP datagrams with any source address.
#[derive(Debug)]
pub struct Spoofer(Socket);

impl Spoofer {
    /// Opens the raw socket (in the calling thread's namespace; needs CAP_NET_RAW).
    pub fn new() -> std::io::Result<Spoofer> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
        socket.set_header_included_v4(true)?;
        Ok(Spoofer(socket))
    }

    /// Sends `payload` from `from` to `to` (both IPv4).
    pub fn send(
        &self,
        from: SocketAddrV4,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let packet = udp_packet(from, to, payload);
        self.0.send_to(&packet, &SockAddr::from(to)).map(|_| ())
    }
}

/// An IPv4 header (the kernel fills in the checksum, length and id) and a UDP header
/// without checksum, then `payload`.
fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total as usize);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

pub(super) fn v4(addr: SocketAddr) -> anyhow::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => anyhow::bail!("{a}: the lab spoofs IPv4 only"),
    }
}

/// One kind of flood datagram, cycled through.
#[derive(Debug, Clone, Copy)]
enum Junk {
    /// Random bytes from the rogue address.
    Random,
    /// A frame with the cluster's id and a bad tag, from the rogue address.
    ClusterId,
    /// The same, from a host's own address (spoofed).
    SpoofedClusterId,
    /// Random bytes from a host's own address (spoofed).
    SpoofedRandom,
}

const JUNK: [Junk; 4] = [
    Junk::Random,
    Junk::ClusterId,
    Junk::SpoofedClusterId,
    Junk::SpoofedRandom,
];

/// A flood under way in the background; it ends by itself after its duration.
#[derive(Debug)]
pub struct Flood {
    handle: std::thread::JoinHandle<anyhow::Result<u64>>,
}

impl Flood {
    /// Whether it is still sending.
    pub fn running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Waits for the flood to end: how many datagrams it sent.
    pub fn wait(self) -> anyhow::Result<u64> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
    }
}

/// Starts flooding every heartbeat port of every host on every interconnect from the
/// rogue namespace, for `ms` at `per_second` datagrams a second in all: random bytes and
/// frames bearing the cluster id, each from the rogue address and spoofed from another
/// host's address.
pub fn start(cluster: &LabCluster, ms: u64, per_second: u64) -> anyhow::Result<Flood> {
    anyhow::ensure!(
        ms <= MAX_FLOOD_MS && per_second <= MAX_FLOOD_RATE,
        "udp-flood: at most {MAX_FLOOD_MS} ms and {MAX_FLOOD_RATE} datagrams a second"
    );
    let hosts = cluster.hosts();
    let interconnects = cluster.spec.interconnects;
    // (target, spoofed source) for every host and interconnect: the next host's address.
    let mut targets = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for ic in 0..interconnects {
            let port = heartbeat_port(ic);
            let to = v4(SocketAddr::new(cluster.address(h, ic), port))?;
            let other = &hosts[(i + 1) % hosts.len()];
            let spoofed = v4(SocketAddr::new(cluster.address(other, ic), port))?;
            targets.push((to, spoofed));
        }
    }
    let cluster_id = cluster_id_of(&format!("lab-{}", cluster.lab.id()));
    let ns: PathBuf = cluster.lab.netns_path(&NsTarget::Rogue)?;
    let handle = std::thread::spawn(move || -> anyhow::Result<u64> {
        crate::lab::spawn::in_netns(&ns, move || flood(&targets, cluster_id, ms, per_second))?
    });
    Ok(Flood { handle })
}

fn flood(
    targets: &[(SocketAddrV4, SocketAddrV4)],
    cluster_id: u64,
    ms: u64,
    per_second: u64,
) -> anyhow::Result<u64> {
    let spoofer = Spoofer::new().context("cannot open a raw socket in the rogue namespace")?;
    let plain = UdpSocket::bind("0.0.0.0:0").context("cannot bind in the rogue namespace")?;
    let start = Instant::now();
    let end = start + Duration::from_millis(ms);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sent: u64 = 0;
    while Instant::now() < end {
        // Pace in bursts of 1 ms worth of datagrams.
        let due = start.elapsed().as_micros() as u64 * per_second / 1_000_000;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let (to, spoofed) = targets[(sent as usize) % targets.len()];
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let junk = JUNK[((sent as usize) / targets.len()) % JUNK.len()];
        let random: Vec<u8> = (0..64u64)
            .map(|i| (seed.rotate_left(i as u32) ^ i) as u8)
            .collect();
        let framed = || {
            let header = Header {
                kind: Kind::Heartbeat,
                cluster_id,
                sender: (seed % 4) as u32 + 1,
                incarnation: seed >> 8,
                sequence: sent + 1,
            };
            wire::encode(&header, &random, b"not the cluster key").expect("small frames encode")
        };
        let result = match junk {
            Junk::Random => plain.send_to(&random, to).map(|_| ()),
            Junk::ClusterId => plain.send_to(&framed(), to).map(|_| ()),
            Junk::SpoofedClusterId => spoofer.send(spoofed, to, &framed()),
            Junk::SpoofedRandom => spoofer.send(spoofed, to, &random),
        };
        // A full send buffer only slows the flood down.
        if let Err(e) = result {
            if e.kind() != std::io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::ENOBUFS)
            {
                return Err(e).with_context(|| format!("flood datagram to {to}"));
            }
        }
        sent += 1;
    }
    Ok(sent)
}

/// Sends each of `payloads` to `to` from `from`, a spoofed source, from the rogue
/// namespace.
pub fn send_spoofed(
    cluster: &LabCluster,
    from: SocketAddr,
    to: SocketAddr,
    payloads: Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    let (from, to) = (v4(from)?, v4(to)?);
    cluster
        .lab
        .run_in_netns(NsTarget::Rogue, move || -> std::io::Result<()> {
            let spoofer = Spoofer::new()?;
            for p in &payloads {
                spoofer.send(from, to, p)?;
            }
            Ok(())
        })?
        .context("cannot send spoofed datagrams from the rogue namespace")
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    #[test]
    fn udp_packet_layout() {
        let from = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5405);
        let to = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 5405);
        let p = udp_packet(from, to, b"abc");
        assert_eq!(p.len(), 31);
        assert_eq!(&p[12..16], &[198, 18, 0, 2]);
        assert_eq!(&p[16..20], &[198, 18, 0, 1]);
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 11);
        assert_eq!(&p[28..], b"abc");
    }
}
