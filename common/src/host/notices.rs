//! Host-down notices and who runs where: which guests are linked here, which guests the
//! other hosts have (from their heartbeats), and the host-down notices owed to each
//! linked guest until it acknowledges them ([`Links::due`], sent by [`announce`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use crate::config::NodeId;
use crate::fencing::DownRecord;
use crate::host::effect::Effect;
use crate::hostlink::{GuestPresence, LinkMessage};

/// A guest linked to this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// Guest cluster.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Node id in its guest cluster.
    pub node_id: NodeId,
    /// Its agent's incarnation.
    pub incarnation: u64,
    /// Its domain, if it said.
    pub domain: Option<String>,
}

#[derive(Debug, Clone)]
struct Notice {
    epoch: u64,
    message: LinkMessage,
    sent_at: Duration,
    acked: bool,
}

/// A notice to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Connection of the linked guest.
    pub conn: u64,
    /// The notice.
    pub message: LinkMessage,
    /// First sending (not a repeat).
    pub first: bool,
}

/// Linked guests, the other hosts' guests and the notices owed.
#[derive(Debug)]
pub struct Links {
    local: BTreeMap<u64, Linked>,
    remote: BTreeMap<NodeId, Vec<GuestPresence>>,
    /// What each other host reported last in each of its latest lives ([`LIVES_KEPT`]),
    /// by its agent's incarnation: a DOWN record's partners are those of its life.
    lives: BTreeMap<NodeId, BTreeMap<u64, Vec<GuestPresence>>>,
    /// By (connection, down host, its incarnation).
    notices: BTreeMap<(u64, NodeId, u64), Notice>,
    next_epoch: u64,
    retry: Duration,
    me: NodeId,
    /// Where each guest (guest cluster, node id) was last reported linked.
    located: BTreeMap<(String, NodeId), NodeId>,
    /// Guests that linked here, kept after their link closes (to destroy them).
    known_here: BTreeMap<(String, NodeId), Linked>,
    /// When the link of a guest that linked here closed, for those not linked again.
    closed_at: BTreeMap<(String, NodeId), Duration>,
}

/// How long a guest whose link closed is still reported as running here: a link that
/// breaks and registers again (the guest rejoined its cluster, the channel hiccuped) must
/// not make the other hosts forget where it runs.
pub const LINGER: Duration = Duration::from_secs(30);

/// How many lives of each other host the reports are kept for. A record of a life older
/// than these names no partner.
pub const LIVES_KEPT: usize = 4;

impl Links {
    /// No guest linked to host `me` yet; unacknowledged notices are repeated every
    /// `retry`.
    pub fn new(me: NodeId, retry: Duration) -> Self {
        Links {
            local: BTreeMap::new(),
            remote: BTreeMap::new(),
            lives: BTreeMap::new(),
            notices: BTreeMap::new(),
            next_epoch: 1,
            retry,
            me,
            located: BTreeMap::new(),
            known_here: BTreeMap::new(),
            closed_at: BTreeMap::new(),
        }
    }

    /// A guest registered on connection `conn`.
    pub fn register(&mut self, conn: u64, guest: Linked) {
        let key = (guest.cluster.clone(), guest.node_id);
        self.located.insert(key.clone(), self.me);
        self.closed_at.remove(&key);
        self.known_here.insert(key, guest.clone());
        self.local.insert(conn, guest);
    }

    /// The host links of the guests that said they are domain `name` (or `uuid`).
    pub fn conns_of_domain(&self, name: &str, uuid: &str) -> Vec<u64> {
        self.local
            .iter()
            .filter(|(_, g)| g.domain.as_deref().is_some_and(|d| d == name || d == uuid))
            .map(|(c, _)| *c)
            .collect()
    }

    /// The guest linked on `conn`.
    pub fn guest(&self, conn: u64) -> Option<&Linked> {
        self.local.get(&conn)
    }

    /// The host where node `node_id` of `cluster` was last reported linked.
    pub fn locate(&self, cluster: &str, node_id: NodeId) -> Option<NodeId> {
        self.located.get(&(cluster.to_string(), node_id)).copied()
    }

    /// The incarnation node `node_id` of `cluster` is linked with, here or where a host
    /// last reported it.
    pub fn incarnation_of(&self, cluster: &str, node_id: NodeId) -> Option<u64> {
        let is = |c: &str, n: NodeId| c == cluster && n == node_id;
        self.local
            .values()
            .find(|g| is(&g.cluster, g.node_id))
            .map(|g| g.incarnation)
            .or_else(|| {
                let host = self.locate(cluster, node_id)?;
                self.remote
                    .get(&host)?
                    .iter()
                    .find(|g| is(&g.cluster, g.node_id))
                    .map(|g| g.incarnation)
            })
    }

    /// A guest that linked here, even if its link has closed since.
    pub fn known_here(&self, cluster: &str, node_id: NodeId) -> Option<&Linked> {
        self.known_here.get(&(cluster.to_string(), node_id))
    }

    /// Connection `conn` ended; returns the guest it carried. Its notices go with it: a
    /// new connection of the guest is owed them afresh.
    pub fn closed(&mut self, conn: u64, now: Duration) -> Option<Linked> {
        self.notices.retain(|(c, _, _), _| *c != conn);
        let gone = self.local.remove(&conn)?;
        let key = (gone.cluster.clone(), gone.node_id);
        if !self
            .local
            .values()
            .any(|g| (g.cluster.clone(), g.node_id) == key)
        {
            self.closed_at.insert(key, now);
        }
        Some(gone)
    }

    /// Guests linked here, as shared in heartbeats.
    /// A guest whose link closed less than [`LINGER`] ago still counts (it most likely
    /// still runs here), unless `runs_here` says its domain does not run here any more
    /// (it was moved to another host, or stopped).
    pub fn presence(&self, now: Duration, runs_here: impl Fn(&str) -> bool) -> Vec<GuestPresence> {
        let lingering = self
            .closed_at
            .iter()
            .filter(|(_, at)| now.saturating_sub(**at) < LINGER)
            .filter_map(|(k, _)| self.known_here.get(k))
            .filter(|g| g.domain.as_deref().is_none_or(&runs_here));
        let mut out: Vec<GuestPresence> = self
            .local
            .values()
            .chain(lingering)
            .map(|g| GuestPresence {
                cluster: g.cluster.clone(),
                node_id: g.node_id,
                node: g.node.clone(),
                incarnation: g.incarnation,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Guests linked here, by connection.
    pub fn local(&self) -> impl Iterator<Item = (&u64, &Linked)> {
        self.local.iter()
    }

    /// Guests the other hosts reported, by host.
    pub fn remote(&self) -> &BTreeMap<NodeId, Vec<GuestPresence>> {
        &self.remote
    }

    /// Host `from`, in its life `incarnation`, reported its linked guests. What a host
    /// reported last in a life is kept after that life ends: those are the guests that
    /// died with it.
    pub fn on_heartbeat(&mut self, (from, incarnation): (NodeId, u64), guests: &[GuestPresence]) {
        if self.remote.get(&from).map(Vec::as_slice) != Some(guests) {
            for g in guests {
                self.located.insert((g.cluster.clone(), g.node_id), from);
            }
            self.remote.insert(from, guests.to_vec());
        }
        let lives = self.lives.entry(from).or_default();
        if lives.get(&incarnation).map(Vec::as_slice) != Some(guests) {
            lives.insert(incarnation, guests.to_vec());
        }
        while lives.len() > LIVES_KEPT {
            lives.pop_first();
        }
    }

    /// The guests that died with the life of `r.target` that record `r` holds DOWN: what
    /// that host reported last in that life (or the latest earlier one heard). What a
    /// later life of the host reports never counts: its guests were not there when that
    /// life ended. A guest that a later life reports under the same incarnation did not
    /// die in it either (a restarted agent's guests run on); one reported there under a
    /// newer incarnation started again, and only its earlier incarnation is named.
    fn died_with(&self, r: &DownRecord) -> Vec<GuestPresence> {
        let Some(lives) = self.lives.get(&r.target) else {
            return Vec::new();
        };
        let Some((_, last)) = lives.range(..=r.incarnation).next_back() else {
            return Vec::new();
        };
        let later = lives.range((Bound::Excluded(r.incarnation), Bound::Unbounded));
        let later: Vec<&GuestPresence> = later.flat_map(|(_, gs)| gs).collect();
        last.iter()
            .filter(|p| {
                !later.iter().any(|g| {
                    g.cluster == p.cluster
                        && g.node_id == p.node_id
                        && g.incarnation == p.incarnation
                })
            })
            .cloned()
            .collect()
    }

    /// The guest on `conn` acknowledged notice `epoch`.
    pub fn on_ack(&mut self, conn: u64, epoch: u64) -> bool {
        match self
            .notices
            .iter_mut()
            .find(|((c, _, _), n)| *c == conn && n.epoch == epoch)
        {
            Some((_, n)) if !n.acked => {
                n.acked = true;
                true
            }
            _ => false,
        }
    }

    /// Notices to send now for the hosts held DOWN (`downs`): new ones for every linked
    /// guest with a partner of its guest cluster that died with a down host's life (see
    /// [`Links::died_with`]), and repeats of
    /// unacknowledged ones every `retry`. `proof` words a record's proof.
    pub fn due(
        &mut self,
        now: Duration,
        downs: &[DownRecord],
        host_name: impl Fn(NodeId) -> String,
        proof: impl Fn(&DownRecord) -> String,
    ) -> Vec<Outgoing> {
        // A host no longer DOWN (it came back) is owed nothing more.
        self.notices.retain(|(_, target, inc), _| {
            downs
                .iter()
                .any(|r| r.target == *target && r.incarnation == *inc)
        });
        let mut out = Vec::new();
        for r in downs {
            let on_it = self.died_with(r);
            if on_it.is_empty() {
                continue;
            }
            // A guest that another host (or this one) reports linked now runs there:
            // it did not die with the host that went down.
            let elsewhere = |p: &GuestPresence| {
                self.local
                    .values()
                    .any(|g| g.cluster == p.cluster && g.node_id == p.node_id)
                    || self.remote.iter().any(|(h, gs)| {
                        *h != r.target
                            && gs
                                .iter()
                                .any(|g| g.cluster == p.cluster && g.node_id == p.node_id)
                    })
            };
            for (&conn, g) in &self.local {
                let partners: Vec<(NodeId, u64)> = on_it
                    .iter()
                    .filter(|p| p.cluster == g.cluster && p.node_id != g.node_id)
                    .filter(|p| !elsewhere(p))
                    .map(|p| (p.node_id, p.incarnation))
                    .collect();
                if partners.is_empty() {
                    continue;
                }
                let key = (conn, r.target, r.incarnation);
                match self.notices.get_mut(&key) {
                    None => {
                        let epoch = self.next_epoch;
                        self.next_epoch += 1;
                        let message = LinkMessage::HostDown {
                            epoch,
                            host: host_name(r.target),
                            proof: proof(r),
                            guests: partners,
                        };
                        out.push(Outgoing {
                            conn,
                            message: message.clone(),
                            first: true,
                        });
                        self.notices.insert(
                            key,
                            Notice {
                                epoch,
                                message,
                                sent_at: now,
                                acked: false,
                            },
                        );
                    }
                    Some(n) if !n.acked && now.saturating_sub(n.sent_at) >= self.retry => {
                        n.sent_at = now;
                        out.push(Outgoing {
                            conn,
                            message: n.message.clone(),
                            first: false,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// Notices sent and not yet acknowledged.
    #[cfg(test)]
    pub fn unacknowledged(&self) -> usize {
        self.notices.values().filter(|n| !n.acked).count()
    }
}

/// The effects of sending notice `out`: counted, recorded when it is the first, sent.
pub fn announce(links: &Links, out: Outgoing, effects: &mut Vec<Effect>) {
    if let LinkMessage::HostDown {
        host,
        guests,
        epoch,
        ..
    } = &out.message
    {
        if out.first {
            let guest = links
                .guest(out.conn)
                .map(|g| g.node.clone())
                .unwrap_or_default();
            effects.push(Effect::Count("host_down_notices"));
            effects.push(Effect::Record {
                subject: Some(guest.clone()),
                kind: "host_down_notice",
                message: format!(
                    "{guest}: told that {host} is DOWN and {} partner(s) died with it (notice {epoch})",
                    guests.len()
                ),
                detail: serde_json::json!({ "host": host, "epoch": epoch, "guests": guests }),
            });
        } else {
            effects.push(Effect::Count("host_down_notices_repeated"));
        }
    }
    effects.push(Effect::SendToGuest {
        conn: out.conn,
        message: out.message,
    });
}

#[cfg(test)]
mod tests;
