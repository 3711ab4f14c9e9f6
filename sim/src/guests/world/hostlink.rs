//! The hosts as the guests see them, over each guest's host link: kill requests go
//! through the kill gate and are answered (kill results); host-down notices say which
//! nodes died with a host.

use super::*;

/// Pause the hosts ask for when an order for the same node is in flight and they cannot
/// make the asker wait on it.
const KILL_DEFER_MS: u64 = 1000;

impl World {
    // ----- the host link -----

    /// Node `i`'s agent sends `message` to its host.
    pub(super) fn send_to_host(&mut self, i: usize, message: LinkMessage) {
        let LinkMessage::KillRequest {
            request, node_id, ..
        } = message
        else {
            // Acknowledgements of host-down notices: nothing to do.
            return;
        };
        let target = node_id as usize;
        if target == 0 || target > self.nodes.len() {
            return;
        }
        let conn = self.agent(i).conn;
        self.kill_requests
            .push((i, target - 1, Some((conn, request))));
    }

    /// Sends `message` to the agent of node `to` over its host link; it arrives at the
    /// next tick at which that agent runs, or never if the agent stops meanwhile.
    pub(super) fn send_to_guest(&mut self, to: usize, message: LinkMessage) {
        if let Some(a) = &self.nodes[to].agent {
            self.link_inbox.push((to, a.conn, message));
        }
    }

    /// Answers request `request` of link session `conn`.
    pub(super) fn answer(
        &mut self,
        conn: u64,
        request: u64,
        ok: bool,
        detail: &str,
        retry_after_ms: u64,
    ) {
        let Some(to) = (0..self.nodes.len())
            .find(|&i| self.nodes[i].agent.as_ref().is_some_and(|a| a.conn == conn))
        else {
            return;
        };
        let message = LinkMessage::KillResult {
            request,
            ok,
            detail: detail.to_string(),
            retry_after_ms,
        };
        self.send_to_guest(to, message);
    }

    /// Delivers the host link's messages to the agents that run; keeps those for a
    /// frozen agent; drops those for an agent that stopped.
    pub(super) fn deliver_link(&mut self) {
        let inbox = std::mem::take(&mut self.link_inbox);
        for (to, conn, message) in inbox {
            let node = &self.nodes[to];
            if node.agent.as_ref().map(|a| a.conn) != Some(conn) {
                continue;
            }
            if !node.serving() {
                self.link_inbox.push((to, conn, message));
                continue;
            }
            self.step_agent(to, Event::Link(message));
        }
    }

    /// What the hosts do about kill requests: each goes through the kill gate as on a
    /// real host and is answered as a host answers it; an order is carried out (the
    /// node destroyed) a moment later, then settled, and its askers told.
    pub(super) fn host_kills(&mut self) {
        let now = self.now;
        if self.forgetful_gate {
            self.gate = KillGate::default();
        }
        if let Some((by, until)) = self.flooding {
            if now >= until || !self.nodes[by].serving() {
                self.flooding = None;
            } else {
                let others = (0..self.nodes.len()).filter(|&t| t != by);
                self.kill_requests.extend(others.map(|t| (by, t, None)));
            }
        }
        for (by, target, asked) in std::mem::take(&mut self.kill_requests) {
            // The hosts report the incarnation of a guest whose agent is linked.
            let node = &self.nodes[target];
            let incarnation = node
                .agent
                .as_ref()
                .map(|a| a.core.membership().incarnation());
            let key = guest_key(target);
            match self.gate.admit(now, &guest_key(by), &key, incarnation) {
                Admission::Order => {
                    self.next_order += 1;
                    let order = self.next_order;
                    self.gate.ordered(&key, order, incarnation);
                    if let Some((conn, request)) = asked {
                        self.gate.wait(&key, conn, request);
                    }
                    let at = now + self.rng.millis(20, 400);
                    self.orders.push((at, order, target, incarnation, by));
                    let last = incarnation.unwrap_or(self.nodes[target].last_incarnation);
                    self.ordered.push((now, by, target, last));
                    self.log(|| {
                        format!("host orders g{} killed (asked by g{})", id(target), id(by))
                    });
                }
                // Answered when the order in flight settles.
                Admission::Join { order } => {
                    let Some((conn, request)) = asked else {
                        continue;
                    };
                    if !self.gate.wait(&key, conn, request) {
                        let why = format!("being killed already (order {order})");
                        self.answer(conn, request, false, &why, KILL_DEFER_MS);
                    }
                }
                Admission::AlreadyDead {
                    detail,
                    retry_after_ms,
                } => {
                    if let Some((conn, request)) = asked {
                        let why = format!("killed already: {detail}");
                        self.answer(conn, request, false, &why, retry_after_ms);
                    }
                }
                Admission::Limited { retry_after_ms } => {
                    if let Some((conn, request)) = asked {
                        let why = "too many kill requests: ask again later";
                        self.answer(conn, request, false, why, retry_after_ms);
                    }
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orders)
            .into_iter()
            .partition(|o| o.0 <= now);
        self.orders = later;
        for (_, order, target, _, by) in due {
            self.log(|| format!("host kills g{} (asked by g{})", id(target), id(by)));
            self.carry_out(order, target);
        }
    }

    /// Kill order `order` is carried out: `target` is destroyed; its askers are told.
    pub(super) fn carry_out(&mut self, order: u64, target: usize) {
        if self.nodes[target].power != Power::Off {
            self.crash(target);
        }
        for (conn, request) in self.gate.settled(self.now, order, true, "destroyed") {
            self.answer(conn, request, true, "destroyed", 0);
        }
    }

    pub(super) fn give_proofs(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.proofs_due)
            .into_iter()
            .partition(|p| p.0 <= now);
        self.proofs_due = later;
        for (_, node, incarnation) in due {
            // The host proves only a machine that is still off.
            if self.nodes[node].power != Power::Off
                || self.nodes[node].last_incarnation != incarnation
            {
                continue;
            }
            let serving: Vec<usize> = (0..self.nodes.len())
                .filter(|&j| self.nodes[j].serving())
                .collect();
            let Some(to) = self.rng.pick(&serving) else {
                continue;
            };
            self.host_down_notice(to, node, incarnation);
        }
    }

    /// A host tells node `to`, linked to it, that node `node` is down under
    /// `incarnation` (its host was proved down while it ran there).
    pub fn host_down_notice(&mut self, to: usize, node: usize, incarnation: u64) {
        if !self.nodes[to].serving() {
            return;
        }
        self.log(|| {
            format!(
                "host tells g{}: g{} (inc {incarnation}) is down",
                id(to),
                id(node)
            )
        });
        self.next_epoch += 1;
        let notice = LinkMessage::HostDown {
            epoch: self.next_epoch,
            host: format!("the host of g{}", id(node)),
            proof: "powered off".to_string(),
            guests: vec![(id(node), incarnation)],
        };
        self.send_to_guest(to, notice);
    }

    /// The incarnation of node `i`'s agent, or the one it had when it last stopped.
    pub fn incarnation(&self, i: usize) -> u64 {
        let node = &self.nodes[i];
        node.agent
            .as_ref()
            .map_or(node.last_incarnation, |a| a.core.membership().incarnation())
    }
}
