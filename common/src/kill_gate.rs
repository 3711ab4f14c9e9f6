//! Which kill requests of linked guests become orders: at most one order in flight per
//! target, no second destroy of a guest killed in the last [`DEAD_KEPT`] (unless it
//! links again under a new incarnation), and a rate limit per asking guest. Whatever a guest sends,
//! the host gives a bounded number of orders, so its heartbeats stay small and its
//! hypervisor is asked for one destroy per real decision.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::NodeId;

/// A guest, by guest cluster and node id.
pub type GuestKey = (String, NodeId);

/// Requests a guest may make at once.
pub const BURST: u32 = 4;
/// One more request allowed per this much time.
pub const REFILL: Duration = Duration::from_secs(1);
/// Guests waiting on one order, answered when it settles (one entry per link).
pub const MAX_WAITERS: usize = 16;
/// How long a kill is remembered, when its guest does not link again: no new order
/// for it meanwhile.
pub const DEAD_KEPT: Duration = Duration::from_secs(120);
/// Orders in flight at once (the heartbeat carries each until it is answered).
pub const MAX_ORDERS: usize = 64;

/// What becomes of a kill request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Give a new order.
    Order,
    /// An order for the same guest is in flight: the asker is answered with its result.
    Join {
        /// The order.
        order: u64,
    },
    /// The guest was killed already (and has not linked again since): no second
    /// order before `retry_after_ms`. Not a proof for this asker: the guest may have
    /// been started again since, unknown to this host.
    AlreadyDead {
        /// What the kill did.
        detail: String,
        /// When a new order may be given.
        retry_after_ms: u64,
    },
    /// Too many requests: ask again after this many ms.
    Limited {
        /// When to ask again.
        retry_after_ms: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    at: Duration,
}

#[derive(Debug, Clone)]
struct InFlight {
    order: u64,
    incarnation: Option<u64>,
    waiters: Vec<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct Dead {
    incarnation: Option<u64>,
    at: Duration,
    detail: String,
}

/// The gate's state.
#[derive(Debug, Default)]
pub struct KillGate {
    buckets: BTreeMap<GuestKey, Bucket>,
    in_flight: BTreeMap<GuestKey, InFlight>,
    dead: BTreeMap<GuestKey, Dead>,
}

impl KillGate {
    /// The request of `asker` to kill `target` at `now`; `incarnation` is the target's
    /// current incarnation as the hosts report it (none when no host reports it).
    pub fn admit(
        &mut self,
        now: Duration,
        asker: &GuestKey,
        target: &GuestKey,
        incarnation: Option<u64>,
    ) -> Admission {
        self.dead
            .retain(|_, d| now.saturating_sub(d.at) < DEAD_KEPT);
        // A bucket idle long enough to be full again is the same as none.
        self.buckets
            .retain(|_, b| now.saturating_sub(b.at) < REFILL * BURST);
        if let Some(d) = self.dead.get(target) {
            if incarnation.is_none() || incarnation == d.incarnation {
                let left = (d.at + DEAD_KEPT).saturating_sub(now);
                return Admission::AlreadyDead {
                    detail: d.detail.clone(),
                    retry_after_ms: left.as_millis().max(1) as u64,
                };
            }
            self.dead.remove(target);
        }
        if let Some(f) = self.in_flight.get(target) {
            return Admission::Join { order: f.order };
        }
        let bucket = self.buckets.entry(asker.clone()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let earned = now.saturating_sub(bucket.at).as_millis() / REFILL.as_millis().max(1);
        if earned > 0 {
            bucket.tokens = (bucket.tokens as u128 + earned).min(BURST as u128) as u32;
            bucket.at += REFILL * earned as u32;
        }
        if bucket.tokens == 0 || self.in_flight.len() >= MAX_ORDERS {
            let next = (bucket.at + REFILL).saturating_sub(now);
            return Admission::Limited {
                retry_after_ms: next.as_millis().max(1) as u64,
            };
        }
        bucket.tokens -= 1;
        Admission::Order
    }

    /// Order `order` was given for `target`, whose incarnation the hosts reported as
    /// `incarnation`.
    pub fn ordered(&mut self, target: &GuestKey, order: u64, incarnation: Option<u64>) {
        let f = InFlight {
            order,
            incarnation,
            waiters: Vec::new(),
        };
        self.in_flight.insert(target.clone(), f);
    }

    /// The guest on link `conn` waits on the order for `target` with its request
    /// `request`; false when too many wait already (it is not answered then).
    pub fn wait(&mut self, target: &GuestKey, conn: u64, request: u64) -> bool {
        let Some(InFlight { waiters, .. }) = self.in_flight.get_mut(target) else {
            return false;
        };
        if let Some(w) = waiters.iter_mut().find(|(c, _)| *c == conn) {
            w.1 = request;
            return true;
        }
        if waiters.len() >= MAX_WAITERS {
            return false;
        }
        waiters.push((conn, request));
        true
    }

    /// Order `order` settled; returns the links and requests that waited on it. A
    /// success proves its target dead at the incarnation reported when it was given.
    pub fn settled(
        &mut self,
        now: Duration,
        order: u64,
        ok: bool,
        detail: &str,
    ) -> Vec<(u64, u64)> {
        let Some(target) = self
            .in_flight
            .iter()
            .find(|(_, f)| f.order == order)
            .map(|(t, _)| t.clone())
        else {
            return Vec::new();
        };
        let Some(f) = self.in_flight.remove(&target) else {
            return Vec::new();
        };
        if ok {
            let dead = Dead {
                incarnation: f.incarnation,
                at: now,
                detail: detail.to_string(),
            };
            self.dead.insert(target, dead);
        }
        f.waiters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn g(n: NodeId) -> GuestKey {
        ("erp".into(), n)
    }

    /// A flood of requests for one target gives one order; the rest join it, and once
    /// it succeeded they learn the guest is dead, with no second order.
    #[test]
    fn a_flood_for_one_target_gives_one_order() {
        let mut gate = KillGate::default();
        assert_eq!(gate.admit(MS(0), &g(3), &g(2), Some(7)), Admission::Order);
        gate.ordered(&g(2), 11, Some(7));
        for i in 0..10_000u64 {
            assert_eq!(
                gate.admit(MS(i / 10), &g(3), &g(2), Some(7)),
                Admission::Join { order: 11 }
            );
        }
        assert!(gate.wait(&g(2), 5, 1));
        assert!(
            gate.wait(&g(2), 5, 2),
            "one entry per link, the latest request"
        );
        assert_eq!(
            gate.settled(MS(1000), 11, true, "g2 destroyed"),
            vec![(5, 2)]
        );
        for i in 0..10_000u64 {
            assert!(matches!(
                gate.admit(
                    MS(1000 + i),
                    &g(3),
                    &g(2),
                    if i % 2 == 0 { Some(7) } else { None }
                ),
                Admission::AlreadyDead { .. }
            ));
        }
        assert_eq!(
            gate.admit(MS(30_000), &g(3), &g(2), Some(8)),
            Admission::Order,
            "it linked again under a new incarnation: a new decision"
        );
    }

    /// A kill is remembered for DEAD_KEPT: the askers are told when to ask again, and
    /// then a new order is given.
    #[test]
    fn a_kill_holds_new_orders_back_for_a_while_only() {
        let mut gate = KillGate::default();
        assert_eq!(gate.admit(MS(0), &g(1), &g(2), None), Admission::Order);
        gate.ordered(&g(2), 1, None);
        gate.settled(MS(100), 1, true, "g2 destroyed");
        assert_eq!(
            gate.admit(MS(100) + DEAD_KEPT - MS(5), &g(1), &g(2), None),
            Admission::AlreadyDead {
                detail: "g2 destroyed".into(),
                retry_after_ms: 5
            }
        );
        assert_eq!(
            gate.admit(MS(100) + DEAD_KEPT, &g(1), &g(2), None),
            Admission::Order
        );
    }

    #[test]
    fn a_failed_order_may_be_asked_again() {
        let mut gate = KillGate::default();
        assert_eq!(gate.admit(MS(0), &g(1), &g(2), None), Admission::Order);
        gate.ordered(&g(2), 1, None);
        assert!(gate.settled(MS(10), 1, false, "failed").is_empty());
        assert_eq!(gate.admit(MS(20), &g(1), &g(2), None), Admission::Order);
    }

    /// Requests for ever new targets are limited per asker to BURST at once and one per
    /// REFILL after; other guests are not limited by it.
    #[test]
    fn each_guest_is_rate_limited() {
        let mut gate = KillGate::default();
        let mut orders = 0;
        let mut limited = 0;
        for i in 0..10_000u32 {
            let now = MS(u64::from(i)); // 10 s
            match gate.admit(now, &g(1), &("crm".into(), i), None) {
                Admission::Order => orders += 1,
                Admission::Limited { retry_after_ms } => {
                    assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}");
                    limited += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(orders, BURST + 9, "a burst, then one a second");
        assert_eq!(limited, 10_000 - orders);
        assert_eq!(gate.admit(MS(10_000), &g(2), &g(9), None), Admission::Order);
        assert_eq!(gate.buckets.len(), 2);
        assert_eq!(
            gate.admit(MS(20_000), &g(2), &g(10), None),
            Admission::Order
        );
        assert_eq!(gate.buckets.len(), 1, "idle buckets are forgotten");
    }

    #[test]
    fn orders_in_flight_are_bounded() {
        let mut gate = KillGate::default();
        for n in 0..MAX_ORDERS as u32 {
            let asker = ("a".to_string(), n);
            assert_eq!(gate.admit(MS(0), &asker, &g(n), None), Admission::Order);
            gate.ordered(&g(n), u64::from(n), None);
        }
        assert!(matches!(
            gate.admit(MS(0), &("a".into(), 999), &g(999), None),
            Admission::Limited { .. }
        ));
    }

    #[test]
    fn waiters_are_bounded() {
        let mut gate = KillGate::default();
        gate.ordered(&g(2), 1, None);
        for conn in 0..MAX_WAITERS as u64 {
            assert!(gate.wait(&g(2), conn, 1));
        }
        assert!(!gate.wait(&g(2), 999, 1));
        assert!(!gate.wait(&g(3), 1, 1), "no order for it");
    }
}
