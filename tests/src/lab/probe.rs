//! The post-setup check that the lab's link layer really carries packets.
//!
//! It sends UDP datagrams between lab namespaces from in-process sockets, so it needs no
//! external tool and never touches the root namespace.

use super::{names, Lab, NsTarget};
use anyhow::{bail, Result};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

const ATTEMPTS: usize = 10;
const WAIT: Duration = Duration::from_millis(200);

/// Checks that h1 reaches every other host and the rogue on every interconnect (or, with
/// a single host, that the rogue reaches h1).
pub fn check_reachability(lab: &Lab) -> Result<()> {
    let spec = lab.spec();
    for k in 0..spec.interconnects {
        let h1 = (NsTarget::host("h1"), IpAddr::V4(names::host_addr(1, k)));
        let mut pairs = Vec::new();
        for j in 2..=spec.hosts {
            pairs.push((
                h1.clone(),
                (
                    NsTarget::Host(names::host_name(j)),
                    IpAddr::V4(names::host_addr(j, k)),
                ),
            ));
        }
        let rogue = (NsTarget::Rogue, IpAddr::V4(names::rogue_addr(k)));
        if spec.hosts == 1 {
            pairs.push((rogue, h1));
        } else {
            pairs.push((h1, rogue));
        }
        for ((from, from_addr), (to, to_addr)) in pairs {
            if !udp_reaches(lab, &from, from_addr, &to, to_addr)? {
                bail!(
                    "lab {}: {} ({from_addr}, namespace {}) cannot reach {} ({to_addr}, namespace {}) on interconnect {k}",
                    lab.id(),
                    label(&from),
                    lab.netns_name(&from)?,
                    label(&to),
                    lab.netns_name(&to)?,
                );
            }
        }
    }
    Ok(())
}

fn label(t: &NsTarget) -> String {
    match t {
        NsTarget::Host(h) => h.clone(),
        NsTarget::Rogue => "rogue".into(),
        NsTarget::Switch => "switch".into(),
    }
}

/// Whether a datagram from `from_addr` in `from` arrives at `to_addr` in `to`.
fn udp_reaches(
    lab: &Lab,
    from: &NsTarget,
    from_addr: IpAddr,
    to: &NsTarget,
    to_addr: IpAddr,
) -> Result<bool> {
    let rx = lab.run_in_netns(to.clone(), || UdpSocket::bind(SocketAddr::new(to_addr, 0)))??;
    rx.set_read_timeout(Some(WAIT))?;
    let dest = rx.local_addr()?;
    let tx = lab.run_in_netns(from.clone(), || {
        UdpSocket::bind(SocketAddr::new(from_addr, 0))
    })??;
    let token = format!("hvlab-probe {} {from_addr}", lab.id());
    let mut buf = [0u8; 128];
    for _ in 0..ATTEMPTS {
        // The first datagram may wait on ARP; later ones cover a port that came up late.
        tx.send_to(token.as_bytes(), dest)?;
        while let Ok((n, src)) = rx.recv_from(&mut buf) {
            if src.ip() == from_addr && &buf[..n] == token.as_bytes() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
