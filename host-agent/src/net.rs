//! Heartbeat sockets: one UDP socket per interconnect, bound to this host's address on
//! it, built with socket2 and handed to tokio.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::agent::Input;

/// A bound UDP socket with a receive buffer sized for bursts.
pub fn bind_udp(addr: SocketAddr, what: &str) -> anyhow::Result<Arc<UdpSocket>> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .with_context(|| format!("cannot create the {what} socket"))?;
    socket.set_reuse_address(true)?;
    let _ = socket.set_recv_buffer_size(1 << 20);
    // Mark heartbeats as network control traffic (DSCP CS6) so switches favour them.
    if addr.is_ipv4() {
        let _ = socket.set_tos_v4(0xc0);
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind the {what} socket to {addr}"))?;
    let std: std::net::UdpSocket = socket.into();
    Ok(Arc::new(UdpSocket::from_std(std)?))
}

/// Receives datagrams on `socket` and forwards them to the agent as heartbeat input
/// for interconnect `ic`.
pub async fn receive_frames(socket: Arc<UdpSocket>, ic: usize, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let input = Input::Frame {
                    ic,
                    from,
                    at: Instant::now(),
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(interconnect = ic, cause = %e, "receive error");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every address of a host that notices and frames may legitimately come from.
pub fn host_addresses(
    host: &hvcluster_common::config::HostEntry,
) -> impl Iterator<Item = IpAddr> + '_ {
    host.addresses
        .values()
        .copied()
        .chain(host.kdump_addresses.iter().copied())
}
