//! Host-down notices and who runs where: which guests are linked here, which guests the
//! other hosts have (from their heartbeats), and the host-down notices owed to each
//! linked guest until it acknowledges them ([`Links::due`], sent by [`announce`]).

use std::collections::BTreeMap;
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

impl Links {
    /// No guest linked to host `me` yet; unacknowledged notices are repeated every
    /// `retry`.
    pub fn new(me: NodeId, retry: Duration) -> Self {
        Links {
            local: BTreeMap::new(),
            remote: BTreeMap::new(),
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

    /// Host `from` reported its linked guests. What a host reported last is kept after
    /// it fails: those are the guests that died with it.
    pub fn on_heartbeat(&mut self, from: NodeId, guests: &[GuestPresence]) {
        if self.remote.get(&from).map(Vec::as_slice) != Some(guests) {
            for g in guests {
                self.located.insert((g.cluster.clone(), g.node_id), from);
            }
            self.remote.insert(from, guests.to_vec());
        }
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
    /// guest with a partner of its guest cluster on a down host, and repeats of
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
            let Some(on_it) = self.remote.get(&r.target) else {
                continue;
            };
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
mod tests {
    use super::*;
    use crate::fencing::Proof;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn guest(cluster: &str, node_id: NodeId) -> Linked {
        Linked {
            cluster: cluster.into(),
            node: format!("g{node_id}"),
            node_id,
            incarnation: 10 + u64::from(node_id),
            domain: None,
        }
    }

    fn presence(cluster: &str, node_id: NodeId) -> GuestPresence {
        GuestPresence {
            cluster: cluster.into(),
            node_id,
            node: format!("g{node_id}"),
            incarnation: 10 + u64::from(node_id),
        }
    }

    fn down(target: NodeId) -> DownRecord {
        DownRecord {
            target,
            incarnation: 5,
            proof: Proof::KdumpNotice,
            by: 2,
        }
    }

    fn due(l: &mut Links, ms: u64, downs: &[DownRecord]) -> Vec<Outgoing> {
        l.due(
            Duration::from_millis(ms),
            downs,
            |n| format!("h{n}"),
            |_| "kdump".into(),
        )
    }

    #[test]
    fn a_down_host_is_notified_to_partners_only_repeated_until_acknowledged() {
        let mut l = Links::new(9, Duration::from_millis(500));
        l.register(7, guest("erp", 2));
        l.register(8, guest("crm", 5));
        l.on_heartbeat(1, &[presence("erp", 1), presence("web", 1)]);
        assert!(due(&mut l, 0, &[]).is_empty(), "nothing is down");
        let first = due(&mut l, 10, &[down(1)]);
        assert_eq!(
            first,
            vec![Outgoing {
                conn: 7,
                message: LinkMessage::HostDown {
                    epoch: 1,
                    host: "h1".into(),
                    proof: "kdump".into(),
                    guests: vec![(1, 11)],
                },
                first: true,
            }],
            "only the guest with a partner on the down host"
        );
        assert!(
            due(&mut l, 100, &[down(1)]).is_empty(),
            "not before the retry time"
        );
        let again = due(&mut l, 600, &[down(1)]);
        assert_eq!(again.len(), 1);
        assert!(!again[0].first);
        assert!(l.on_ack(7, 1));
        assert!(!l.on_ack(7, 1), "an ack counts once");
        assert!(due(&mut l, 2000, &[down(1)]).is_empty(), "acknowledged");
        assert_eq!(l.unacknowledged(), 0);
    }

    #[test]
    fn a_reconnected_guest_is_notified_again_and_a_returned_host_is_forgotten() {
        let mut l = Links::new(9, Duration::from_millis(500));
        l.register(7, guest("erp", 2));
        l.on_heartbeat(1, &[presence("erp", 1)]);
        assert_eq!(due(&mut l, 0, &[down(1)]).len(), 1);
        assert_eq!(l.closed(7, MS(5)), Some(guest("erp", 2)));
        l.register(9, guest("erp", 2));
        let renewed = due(&mut l, 10, &[down(1)]);
        assert_eq!(renewed.len(), 1);
        assert_eq!(renewed[0].conn, 9);
        assert!(renewed[0].first);
        assert!(due(&mut l, 5000, &[]).is_empty());
        assert_eq!(l.unacknowledged(), 0, "the host came back: nothing is owed");
    }

    #[test]
    fn a_guest_whose_domain_left_this_host_stops_lingering() {
        let mut l = Links::new(9, Duration::from_millis(500));
        let mut g = guest("erp", 2);
        g.domain = Some("vm2".into());
        l.register(1, g);
        l.closed(1, MS(1000));
        assert_eq!(
            l.presence(MS(2000), |d| d == "vm2"),
            vec![presence("erp", 2)]
        );
        assert!(
            l.presence(MS(2000), |_| false).is_empty(),
            "moved to another host (or stopped): not reported here any more"
        );
    }

    #[test]
    fn presence_lists_local_guests_once() {
        let mut l = Links::new(9, Duration::from_millis(500));
        l.register(1, guest("erp", 2));
        l.register(2, guest("erp", 2));
        l.register(3, guest("crm", 1));
        let p = l.presence(MS(0), |_| true);
        assert_eq!(p, vec![presence("crm", 1), presence("erp", 2)]);
    }

    #[test]
    fn a_guest_whose_link_closed_is_still_reported_for_a_while() {
        let mut l = Links::new(9, Duration::from_millis(500));
        l.register(1, guest("erp", 2));
        l.closed(1, MS(1000));
        assert_eq!(l.presence(MS(2000), |_| true), vec![presence("erp", 2)]);
        assert!(l.presence(MS(1000) + LINGER, |_| true).is_empty());
        l.register(2, guest("erp", 2));
        l.closed(2, MS(40_000));
        l.register(3, guest("erp", 2));
        assert_eq!(
            l.presence(MS(200_000), |_| true),
            vec![presence("erp", 2)],
            "linked again"
        );
    }

    #[test]
    fn a_guest_linked_elsewhere_now_did_not_die_with_its_old_host() {
        let mut l = Links::new(9, Duration::from_millis(500));
        l.register(7, guest("erp", 1));
        // Host 1 last reported erp node 2; host 3 reports it now (it moved).
        l.on_heartbeat(1, &[presence("erp", 2)]);
        l.on_heartbeat(3, &[presence("erp", 2)]);
        assert!(due(&mut l, 0, &[down(1)]).is_empty());
        l.on_heartbeat(3, &[]);
        assert_eq!(due(&mut l, 10, &[down(1)]).len(), 1);
    }
}

#[cfg(test)]
mod locate_tests {
    use super::*;

    #[test]
    fn guests_are_located_where_they_were_last_linked() {
        let mut l = Links::new(1, Duration::from_millis(500));
        l.register(
            4,
            Linked {
                cluster: "erp".into(),
                node: "g2".into(),
                node_id: 2,
                incarnation: 1,
                domain: None,
            },
        );
        l.on_heartbeat(
            3,
            &[GuestPresence {
                cluster: "erp".into(),
                node_id: 1,
                node: "g1".into(),
                incarnation: 1,
            }],
        );
        assert_eq!(l.locate("erp", 2), Some(1));
        assert_eq!(l.locate("erp", 1), Some(3));
        assert_eq!(l.locate("crm", 1), None);
        l.closed(4, Duration::ZERO);
        assert!(
            l.known_here("erp", 2).is_some(),
            "kept after the link closed"
        );
        assert_eq!(l.locate("erp", 2), Some(1));
    }
}
