//! The guest agent's driver loop, in the order of `guest-agent/src/agent.rs`: frames,
//! ticks and operation results in, heartbeats, resource operations and kill requests out.

use super::*;

impl World {
    // ----- the agent's driver loop, in agent.rs's order -----

    pub(super) fn tick_agent(&mut self, i: usize) {
        let now = self.local(i);
        let actions = self.agent(i).membership.tick(now);
        self.perform(i, actions);
        self.update_nodes(i);
        let actions = self.agent(i).engine.tick(now);
        self.perform_apps(i, actions);
        self.flush_announce(i);
    }

    pub(super) fn flush_announce(&mut self, i: usize) {
        if std::mem::take(&mut self.agent(i).announce) {
            self.send_heartbeats(i);
        }
    }

    pub(super) fn update_nodes(&mut self, i: usize) {
        let now = self.local(i);
        let a = self.agent(i);
        let changes = a.nodes.update(&a.membership.peers(now));
        self.after_node_changes(i, changes);
    }

    pub(super) fn after_node_changes(&mut self, i: usize, changes: Vec<NodeChange>) {
        for c in &changes {
            self.log(|| format!("g{} sees g{}: {} -> {}", id(i), c.node, c.from, c.to));
        }
        if !changes.is_empty() {
            let now = self.local(i);
            let a = self.agent(i);
            let views = a.nodes.views();
            let actions = a.engine.set_nodes(now, views);
            self.perform_apps(i, actions);
        }
    }

    pub(super) fn on_frame(&mut self, frame: Frame) {
        let i = frame.to;
        let sender = id(frame.from);
        let now = self.local(i);
        let a = self.agent(i);
        let Ok(accepted) = a
            .windows
            .entry(sender)
            .or_default()
            .accept(frame.incarnation, frame.sequence)
        else {
            return;
        };
        let actions = a.membership.on_heartbeat(
            now,
            sender,
            frame.incarnation,
            accepted,
            &frame.hb.membership,
        );
        self.perform(i, actions);
        self.update_nodes(i);
        let actions =
            self.agent(i)
                .engine
                .on_gossip(now, sender, frame.incarnation, &frame.hb.gossip);
        self.perform_apps(i, actions);
        for proof in frame.hb.proofs {
            self.on_proof(i, sender, proof);
        }
        self.flush_announce(i);
    }

    pub(super) fn on_proof(&mut self, i: usize, from: NodeId, proof: DownProof) {
        let now = self.local(i);
        let a = self.agent(i);
        if proof.node == id(i) {
            if proof.incarnation == a.membership.incarnation() && !a.declared_dead {
                // The others hold this node dead and may take over: nothing may run here.
                a.declared_dead = true;
                let actions = a.engine.abandon(now);
                self.log(|| format!("g{} is held DOWN by g{from}: abandons", id(i)));
                self.perform_apps(i, actions);
            }
            return;
        }
        let change = a.nodes.prove_down(proof);
        if let Some(change) = change {
            self.after_node_changes(i, vec![change]);
        }
    }

    pub(super) fn perform(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendHeartbeats => self.send_heartbeats(i),
                Action::Event(e) => self.log(|| format!("g{} {e:?}", id(i))),
                Action::Rejoin => {
                    let now = self.local(i);
                    self.nodes[i].incarnations += 1;
                    let inc = self.nodes[i].incarnations;
                    self.log(|| format!("g{} rejoins with incarnation {inc}", id(i)));
                    let a = self.agent(i);
                    a.sequences.clear();
                    let more = a.membership.rejoin(now, inc);
                    self.perform(i, more);
                }
            }
        }
    }

    pub(super) fn perform_apps(&mut self, i: usize, actions: Vec<AppAction>) {
        for action in actions {
            match action {
                AppAction::Run(op) => self.run_op(i, op),
                AppAction::Event(e) => self.log(|| format!("g{} {e:?}", id(i))),
                AppAction::Persist => {
                    let saved = self.agent(i).engine.persistent();
                    self.nodes[i].disk = saved;
                }
                AppAction::Announce => self.agent(i).announce = true,
                AppAction::KillNode(n) => {
                    self.log(|| format!("g{} asks for g{n} to be killed", id(i)));
                    self.kill_requests.push((i, n as usize - 1));
                }
            }
        }
    }

    pub(super) fn send_heartbeats(&mut self, i: usize) {
        let n = self.nodes.len();
        let a = self.nodes[i].agent.as_mut().expect("the agent runs");
        let hb = GuestHeartbeat {
            membership: a.membership.heartbeat(0),
            gossip: a.engine.gossip(),
            proofs: a.nodes.proofs(),
            migrating_ms: 0,
        };
        let incarnation = a.membership.incarnation();
        let mut sequences = Vec::new();
        for to in (0..n).filter(|&to| to != i) {
            let s = a.sequences.entry(id(to)).or_insert(0);
            *s += 1;
            sequences.push((to, *s));
        }
        for (to, sequence) in sequences {
            if self.cut.contains(&(i, to)) || self.rng.chance(self.loss) {
                continue;
            }
            // Mostly the next tick; now and then later, so frames overtake each other.
            let ticks = if self.rng.chance(15) {
                2 + self.rng.below(3) as u32
            } else {
                1
            };
            self.frames.push(Frame {
                at: self.now + TICK * ticks,
                from: i,
                to,
                incarnation,
                sequence,
                hb: hb.clone(),
            });
        }
    }
}
