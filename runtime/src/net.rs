//! Heartbeat sockets: one UDP socket per interconnect, bound to this node's address on
//! it, built with socket2 and handed to tokio; shared by the host and the guest agent.
//!
//! Each socket's receiving task checks what arrives before anything is queued: a
//! datagram whose source is no member's address on that interconnect is dropped at
//! once, the rest goes through the intake (authentication, replay window), and only
//! accepted heartbeats reach the driver loop, on a bounded queue of their own. A flood
//! at the heartbeat port therefore costs the receiving task, never the driver loop's
//! other work, and cannot push a real heartbeat out of a shared queue.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::config::{Interconnect, NodeId};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::counters::Counters;
use crate::events::EventLog;
use crate::intake::{report_drop, Admitted, ClusterKey, DropReason, FrameIntake, HeartbeatPayload};
use crate::outbox::{Outbox, PeerRoute};

/// An accepted heartbeat, as a receiving task hands it to the driver loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<P> {
    /// Interconnect index.
    pub ic: usize,
    /// Source address.
    pub from: SocketAddr,
    /// When it was received.
    pub at: Instant,
    /// The heartbeat and what the intake learnt about its sender.
    pub heartbeat: Admitted<P>,
}

/// Where the receiving tasks put accepted heartbeats, and what they count drops with.
#[derive(Debug)]
pub struct FrameSink<P> {
    /// The driver loop's queue of accepted heartbeats.
    pub tx: mpsc::Sender<Received<P>>,
    /// The member's counters.
    pub counters: Counters,
    /// The member's event log.
    pub events: EventLog,
}

impl<P> Clone for FrameSink<P> {
    fn clone(&self) -> Self {
        FrameSink {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
            events: self.events.clone(),
        }
    }
}

/// A datagram received on a heartbeat socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Interconnect index.
    pub ic: usize,
    /// Source address.
    pub from: SocketAddr,
    /// When it was received.
    pub at: Instant,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A member of a cluster as the heartbeat link sees it: node id, name and its address
/// on each interconnect, by interconnect name.
pub type RosterEntry<'a> = (NodeId, &'a str, &'a BTreeMap<String, IpAddr>);

/// Who exchanges heartbeats: the cluster key and id, this node, the interconnects and
/// every member (this node too).
#[derive(Debug)]
pub struct Roster<'a> {
    key: ClusterKey,
    cluster_id: u64,
    me: NodeId,
    interconnects: &'a [Interconnect],
    members: Vec<RosterEntry<'a>>,
}

impl<'a> Roster<'a> {
    /// The roster of member `own_name` in cluster `cluster_id`; fails when `members`
    /// has no such name.
    pub fn new(
        key: Vec<u8>,
        cluster_id: u64,
        own_name: &str,
        interconnects: &'a [Interconnect],
        members: impl IntoIterator<Item = RosterEntry<'a>>,
    ) -> anyhow::Result<Self> {
        let members: Vec<RosterEntry<'a>> = members.into_iter().collect();
        let me = members
            .iter()
            .find(|(_, name, _)| *name == own_name)
            .map(|(id, _, _)| *id)
            .with_context(|| format!("{own_name:?} is not a member in the configuration"))?;
        Ok(Roster {
            key: ClusterKey::new(key),
            cluster_id,
            me,
            interconnects,
            members,
        })
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Every member's id and name.
    pub fn names(&self) -> impl Iterator<Item = (NodeId, &'a str)> + '_ {
        self.members.iter().map(|&(id, name, _)| (id, name))
    }

    /// Binds this node's socket on every interconnect (`what` names them in errors),
    /// starts a task per socket that checks what arrives and puts accepted heartbeats
    /// `P` into `sink`, and returns the outbox of heartbeats over the same sockets.
    pub fn open<P>(
        self,
        what: &str,
        sink: FrameSink<P>,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> anyhow::Result<Outbox<P>>
    where
        P: HeartbeatPayload + Send + 'static,
    {
        let address = |(_, name, addresses): &RosterEntry<'_>, ic: &Interconnect| {
            addresses
                .get(&ic.name)
                .map(|ip| SocketAddr::new(*ip, ic.port))
                .with_context(|| format!("{name} has no address on interconnect {}", ic.name))
        };
        let mine = self
            .members
            .iter()
            .find(|(id, _, _)| *id == self.me)
            .expect("the roster holds this node");
        let members = self.members.iter().map(|(id, _, _)| *id);
        let intake = FrameIntake::new(self.key.clone(), self.cluster_id, self.me, members);
        let intake = Arc::new(Mutex::new(intake));
        let mut sockets = Vec::new();
        for (ic, icfg) in self.interconnects.iter().enumerate() {
            let socket = bind_udp(address(mine, icfg)?, &format!("{what} ({})", icfg.name))?;
            // Heartbeats come only from the other members' addresses on this interconnect.
            let sources: HashSet<IpAddr> = self
                .members
                .iter()
                .filter(|(id, _, _)| *id != self.me)
                .filter_map(|(_, _, addrs)| addrs.get(&icfg.name).copied())
                .collect();
            tasks.push(tokio::spawn(receive_frames(
                socket.clone(),
                ic,
                sources,
                intake.clone(),
                sink.clone(),
            )));
            sockets.push(socket);
        }
        let mut routes = Vec::new();
        for peer in self.members.iter().filter(|(id, _, _)| *id != self.me) {
            let addrs = self.interconnects.iter().map(|ic| address(peer, ic));
            routes.push(PeerRoute {
                id: peer.0,
                addrs: addrs.collect::<anyhow::Result<_>>()?,
            });
        }
        Ok(Outbox::new(
            self.key,
            self.cluster_id,
            self.me,
            sockets,
            routes,
        ))
    }
}

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

/// Receives datagrams on `socket` (interconnect `ic`) until the agent is gone: drops
/// those from an address not in `sources` and those `intake` refuses, counting each,
/// and queues accepted heartbeats in `sink` (dropped and counted when the queue is full).
pub async fn receive_frames<P: HeartbeatPayload>(
    socket: Arc<UdpSocket>,
    ic: usize,
    sources: HashSet<IpAddr>,
    intake: Arc<Mutex<FrameIntake<P>>>,
    sink: FrameSink<P>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let at = Instant::now();
                if !sources.contains(&from.ip()) {
                    sink.counters.bump("frames_received");
                    report_drop(
                        &sink.counters,
                        &sink.events,
                        DropReason::UnknownSource,
                        from,
                    );
                    continue;
                }
                let admitted = intake.lock().unwrap_or_else(|p| p.into_inner()).check(
                    ic,
                    from,
                    &buf[..n],
                    &sink.counters,
                    &sink.events,
                );
                let Some(heartbeat) = admitted else {
                    continue;
                };
                let received = Received {
                    ic,
                    from,
                    at,
                    heartbeat,
                };
                match sink.tx.try_send(received) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        report_drop(&sink.counters, &sink.events, DropReason::QueueFull, from);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(e) => {
                tracing::warn!(interconnect = ic, cause = %e, "receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
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

#[cfg(test)]
mod tests;
