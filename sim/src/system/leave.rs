//! Clean leaves in the whole system: a host's agent says it leaves, sends its last
//! heartbeats and stops (its domains run on); later it starts again. The rule checked:
//! an agent that heard a host leave never holds it Failed, nor DOWN in the incarnation
//! that left, while that host has not run again (a new agent) or lost power since.

use std::collections::BTreeSet;
use std::time::Duration;

use super::world::{hid, SystemWorld};

/// Heartbeats sent in all when leaving (the agent's own figure).
const LEAVE_HEARTBEATS: usize = 3;

/// The leaves in force and who heard them.
#[derive(Debug, Clone, Default)]
pub struct Leaves {
    /// Per host: the incarnation that left, until it runs again or loses power.
    left: Vec<Option<u64>>,
    /// (agent's host, its generation, the host that left): that agent held it Left.
    heard: BTreeSet<(usize, u64, usize)>,
}

impl Leaves {
    /// No leave in force among `n` hosts.
    pub fn new(n: usize) -> Self {
        Leaves {
            left: vec![None; n],
            heard: BTreeSet::new(),
        }
    }

    /// Host `h` runs a new agent or loses power: its leave is over.
    pub fn ended(&mut self, h: usize) {
        if let Some(slot) = self.left.get_mut(h) {
            *slot = None;
        }
        self.heard.retain(|&(_, _, l)| l != h);
    }
}

impl SystemWorld {
    /// Host `h`'s agent leaves and stops; it starts again after `back_after`.
    pub fn leave(&mut self, h: usize, back_after: Duration) {
        let Some(agent) = self.hosts[h].agent.as_ref() else {
            return;
        };
        let incarnation = agent.incarnation();
        self.log(|| format!("h{} leaves (incarnation {incarnation})", hid(h)));
        let now = self.now;
        if let Some(agent) = self.hosts[h].agent.as_mut() {
            let effects = agent.leave(now);
            self.perform(h, effects);
        }
        for _ in 1..LEAVE_HEARTBEATS {
            if self.hosts[h].agent.is_some() {
                self.send_heartbeats(h);
            }
        }
        self.stop_agent(h, Some(back_after));
        self.leaves.left[h] = Some(incarnation);
    }

    /// The rule, once a tick.
    pub(super) fn check_leaves(&mut self) {
        for h in 0..self.hosts.len() {
            let Some(inc) = self.leaves.left[h] else {
                continue;
            };
            for a in (0..self.hosts.len()).filter(|&a| a != h) {
                let generation = self.hosts[a].generation;
                let Some(agent) = self.hosts[a].agent.as_ref() else {
                    continue;
                };
                let key = (a, generation, h);
                if agent.holds_left(hid(h)) {
                    self.leaves.heard.insert(key);
                    continue;
                }
                if !self.leaves.heard.contains(&key) {
                    continue;
                }
                let failed = agent.failed(hid(h));
                let down = agent.down(hid(h)).is_some_and(|r| r.incarnation == inc);
                if failed || down {
                    self.fail(format!(
                        "h{} left (incarnation {inc}) and has not run since, yet h{} that \
                         heard it leave holds it {}",
                        hid(h),
                        hid(a),
                        if down { "DOWN" } else { "Failed" }
                    ));
                }
            }
        }
    }
}
