//! The host links: each serving guest node is linked to the host agent of the host its
//! domain runs on, as `hv-guestd` registers with `hv-hostd`; the host cores decide the
//! host-down notices ([`hvcluster_common::host::Links`]) and the world carries them to
//! the guest and its acknowledgement back.

use hvcluster_common::config::NodeId;
use hvcluster_common::host::{Event, Linked};
use hvcluster_common::hostlink::LinkMessage;

use super::host_agent::{guest_names, GUEST_CLUSTER};
use super::world::{hid, SystemWorld};
use crate::guests::world::Power;

/// A guest's link to a host agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLink {
    /// The host (index).
    pub host: usize,
    /// That host agent's generation (a restarted agent has lost its links).
    pub generation: u64,
    /// The guest agent's incarnation it registered with.
    pub incarnation: u64,
    /// The connection id.
    pub conn: u64,
}

impl SystemWorld {
    /// Brings every guest's link in line with the world: a serving guest is linked to
    /// the agent of its domain's host under its current incarnation; any other link
    /// closes (the host agent is told when it still runs).
    pub(super) fn sync_links(&mut self) {
        for g in 0..self.links.len() {
            let h = self.domain_host[g];
            let host = &self.hosts[h];
            let want = (self.guests.nodes[g].serving() && host.powered && host.agent.is_some())
                .then(|| (h, host.generation, self.guests.incarnation(g)));
            let have = self.links[g].map(|l| (l.host, l.generation, l.incarnation));
            if want == have {
                continue;
            }
            if let Some(old) = self.links[g].take() {
                if self.hosts[old.host].generation == old.generation {
                    let why = "guest gone".to_string();
                    self.host_step(
                        old.host,
                        Event::LinkClosed {
                            conn: old.conn,
                            why,
                        },
                    );
                }
            }
            let Some((host, generation, incarnation)) = want else {
                continue;
            };
            self.next_conn += 1;
            let conn = self.next_conn;
            self.links[g] = Some(GuestLink {
                host,
                generation,
                incarnation,
                conn,
            });
            let (node, domain) = guest_names(g as NodeId + 1);
            let guest = Linked {
                cluster: GUEST_CLUSTER.into(),
                node,
                node_id: g as NodeId + 1,
                incarnation,
                domain: Some(domain),
            };
            self.log(|| format!("g{} links to h{} (conn {conn})", g + 1, hid(host)));
            self.host_step(host, Event::GuestLinked { conn, guest });
        }
    }

    /// Host `h` sends `message` to the guest linked on `conn`, if it still is.
    pub(super) fn send_to_guest(&mut self, h: usize, conn: u64, message: LinkMessage) {
        let Some(g) = (0..self.links.len()).find(|&g| {
            self.links[g].is_some_and(|l| {
                l.conn == conn && l.host == h && l.generation == self.hosts[h].generation
            })
        }) else {
            return;
        };
        match message {
            LinkMessage::HostDown {
                epoch,
                host,
                guests,
                ..
            } => {
                self.log(|| format!("h{} tells g{}: {host} is DOWN", hid(h), g + 1));
                for (node_id, incarnation) in guests {
                    let node = node_id as usize - 1;
                    // A notice names the partners that died with the host: never one
                    // that runs under the incarnation named.
                    let runs = node < self.guests.nodes.len()
                        && self.guests.nodes[node].power != Power::Off
                        && incarnation != 0
                        && self.guests.incarnation(node) == incarnation;
                    if runs {
                        self.fail(format!(
                            "h{} tells g{} that g{node_id} (incarnation {incarnation}) is \
                             dead with {host}, but it runs",
                            hid(h),
                            g + 1
                        ));
                    }
                    if node < self.guests.nodes.len() && node != g {
                        self.guests.host_down_notice(g, node, incarnation);
                    }
                }
                // A guest agent acknowledges a notice it applied.
                if self.guests.nodes[g].serving() {
                    self.host_step(h, Event::HostDownAck { conn, epoch });
                }
            }
            other => self.log(|| format!("h{} to g{}: {other:?}", hid(h), g + 1)),
        }
    }
}
