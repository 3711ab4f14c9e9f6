//! Guests killed through the hosts (the guests' shutdown facility): a linked guest asks
//! its host to kill a silent partner; the order travels in host heartbeats to the host
//! that runs the partner, which destroys it through its hypervisor and answers the same
//! way. The bookkeeping of orders given and received; what a request becomes is decided
//! in [`request`].

pub mod request;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::NodeId;
use crate::hostlink::{KillAnswer, KillOrder};

/// How long answers are repeated in heartbeats.
const ANSWER_KEPT: Duration = Duration::from_secs(10);

/// An order this host gave, for a guest linked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The order.
    pub order: KillOrder,
    /// Connection of the guest that asked.
    pub conn: u64,
    /// The guest's own request id.
    pub request: u64,
    /// When it was given.
    pub at: Duration,
}

/// Orders given and received.
#[derive(Debug)]
pub struct Kills {
    next_id: u64,
    given: BTreeMap<u64, Given>,
    /// Orders of other hosts for this one: answered ones with the time of the answer.
    received: BTreeMap<(NodeId, u64), Option<(KillAnswer, Duration)>>,
    /// Which requests of linked guests become orders (dedup and rate limit).
    pub gate: crate::kill_gate::KillGate,
}

impl Kills {
    /// Orders numbered after `first_id`. The driver starts it at random, so an agent
    /// restarted within [`ANSWER_KEPT`] cannot have a new order settled by an answer to
    /// an old one of the same id.
    pub fn new(first_id: u64) -> Self {
        Kills {
            next_id: first_id,
            given: BTreeMap::new(),
            received: BTreeMap::new(),
            gate: Default::default(),
        }
    }

    /// Gives a new order for the guest on `conn`; returns it.
    pub fn give(
        &mut self,
        now: Duration,
        conn: u64,
        request: u64,
        target_host: NodeId,
        cluster: String,
        node_id: NodeId,
    ) -> KillOrder {
        self.next_id += 1;
        let order = KillOrder {
            id: self.next_id,
            target_host,
            cluster,
            node_id,
        };
        self.given.insert(
            order.id,
            Given {
                order: order.clone(),
                conn,
                request,
                at: now,
            },
        );
        order
    }

    /// Orders to repeat in heartbeats.
    pub fn orders(&self) -> Vec<KillOrder> {
        self.given.values().map(|g| g.order.clone()).collect()
    }

    /// Answers to repeat in heartbeats; old ones are dropped.
    pub fn answers(&mut self, now: Duration) -> Vec<KillAnswer> {
        self.received.retain(|_, a| {
            a.as_ref()
                .is_none_or(|(_, at)| now.saturating_sub(*at) < ANSWER_KEPT)
        });
        self.received
            .values()
            .filter_map(|a| a.as_ref().map(|(a, _)| a.clone()))
            .collect()
    }

    /// Orders in `from`'s heartbeat meant for `me` and not seen before: to execute.
    pub fn new_orders(&mut self, me: NodeId, from: NodeId, orders: &[KillOrder]) -> Vec<KillOrder> {
        let mut out = Vec::new();
        for o in orders.iter().filter(|o| o.target_host == me) {
            if let std::collections::btree_map::Entry::Vacant(e) = self.received.entry((from, o.id))
            {
                e.insert(None);
                out.push(o.clone());
            }
        }
        out
    }

    /// An order of `from` was executed here.
    pub fn executed(&mut self, now: Duration, from: NodeId, id: u64, ok: bool, detail: String) {
        let answer = KillAnswer {
            from_host: from,
            id,
            ok,
            detail,
        };
        self.received.insert((from, id), Some((answer, now)));
    }

    /// Answers in a heartbeat for orders this host gave: the orders they settle.
    pub fn settled(&mut self, me: NodeId, answers: &[KillAnswer]) -> Vec<(Given, KillAnswer)> {
        answers
            .iter()
            .filter(|a| a.from_host == me)
            .filter_map(|a| self.given.remove(&a.id).map(|g| (g, a.clone())))
            .collect()
    }

    /// Settles an order this host executed itself.
    pub fn settle(&mut self, id: u64) -> Option<Given> {
        self.given.remove(&id)
    }

    /// Orders unanswered for longer than `limit`: given up.
    pub fn expired(&mut self, now: Duration, limit: Duration) -> Vec<Given> {
        let old: Vec<u64> = self
            .given
            .iter()
            .filter(|(_, g)| now.saturating_sub(g.at) > limit)
            .map(|(id, _)| *id)
            .collect();
        old.iter().filter_map(|id| self.given.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn an_order_travels_is_executed_once_and_its_answer_settles_it() {
        let (mut a, mut b) = (Kills::new(100), Kills::new(100));
        let order = a.give(MS(0), 7, 3, 2, "erp".into(), 1);
        assert_eq!(a.orders(), vec![order.clone()]);
        // Host 2 sees it in host 1's heartbeats, again and again: executed once.
        assert_eq!(b.new_orders(2, 1, &a.orders()), vec![order.clone()]);
        assert!(b.new_orders(2, 1, &a.orders()).is_empty());
        assert!(
            b.new_orders(3, 1, &a.orders()).is_empty(),
            "meant for host 2"
        );
        assert!(b.answers(MS(10)).is_empty(), "not executed yet");
        b.executed(MS(50), 1, order.id, true, "destroyed".into());
        let answers = b.answers(MS(60));
        assert_eq!(answers.len(), 1);
        assert!(a.settled(9, &answers).is_empty(), "answers to another host");
        let settled = a.settled(1, &answers);
        assert_eq!(settled.len(), 1);
        assert_eq!((settled[0].0.conn, settled[0].0.request), (7, 3));
        assert!(settled[0].1.ok);
        assert!(a.orders().is_empty());
        assert!(a.settled(1, &answers).is_empty(), "settled once");
        assert!(
            b.answers(MS(20_000)).is_empty(),
            "answers are kept a while only"
        );
    }

    #[test]
    fn unanswered_orders_expire() {
        let mut a = Kills::new(100);
        a.give(MS(0), 7, 3, 2, "erp".into(), 1);
        assert!(a.expired(MS(1000), MS(5000)).is_empty());
        assert_eq!(a.expired(MS(6000), MS(5000)).len(), 1);
        assert!(a.orders().is_empty());
    }
}
