//! The hosts as the guests see them: kill requests through the kill gate, proofs of
//! nodes that are off.

use super::*;

impl World {
    // ----- the host link -----

    /// What the hosts do about kill requests: each goes through the kill gate as on a
    /// real host; an order is carried out (the node destroyed) a moment later, then
    /// settled. A request refused for its rate is asked again (as a guest agent does).
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
                self.kill_requests.extend(others.map(|t| (by, t)));
            }
        }
        let mut again = Vec::new();
        for (by, target) in std::mem::take(&mut self.kill_requests) {
            // The hosts report the incarnation of a guest whose agent is linked.
            let node = &self.nodes[target];
            let incarnation = node.agent.as_ref().map(|a| a.membership.incarnation());
            match self
                .gate
                .admit(now, &guest_key(by), &guest_key(target), incarnation)
            {
                Admission::Order => {
                    self.next_order += 1;
                    let order = self.next_order;
                    self.gate.ordered(&guest_key(target), order, incarnation);
                    let at = now + self.rng.millis(20, 400);
                    self.orders.push((at, order, target, incarnation, by));
                    let last = incarnation.unwrap_or(self.nodes[target].last_incarnation);
                    self.ordered.push((now, by, target, last));
                    self.log(|| {
                        format!("host orders g{} killed (asked by g{})", id(target), id(by))
                    });
                }
                // Answered when the order in flight settles; a guest already killed
                // is proved down by the hosts.
                Admission::Join { .. } | Admission::AlreadyDead { .. } => {}
                Admission::Limited { .. } => {
                    if !again.contains(&(by, target)) {
                        again.push((by, target));
                    }
                }
            }
        }
        self.kill_requests = again;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orders)
            .into_iter()
            .partition(|o| o.0 <= now);
        self.orders = later;
        for (_, order, target, _, by) in due {
            self.log(|| format!("host kills g{} (asked by g{})", id(target), id(by)));
            if self.nodes[target].power != Power::Off {
                self.crash(target);
            }
            self.gate.settled(now, order, true, "destroyed");
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
            self.log(|| {
                format!(
                    "host proves g{} (inc {incarnation}) down to g{}",
                    id(node),
                    id(to)
                )
            });
            let proof = DownProof {
                node: id(node),
                incarnation,
            };
            self.on_proof(to, id(to), proof);
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
        let proof = DownProof {
            node: id(node),
            incarnation,
        };
        self.on_proof(to, id(to), proof);
    }

    /// The incarnation of node `i`'s agent, or the one it had when it last stopped.
    pub fn incarnation(&self, i: usize) -> u64 {
        let node = &self.nodes[i];
        node.agent
            .as_ref()
            .map_or(node.last_incarnation, |a| a.membership.incarnation())
    }
}
