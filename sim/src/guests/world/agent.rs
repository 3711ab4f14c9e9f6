//! The guest agent's driver, as `guest-agent/src/agent/mod.rs` is: frames, ticks,
//! operation results, host-link messages and operator requests become events for the
//! node's [`GuestCore`]; the world performs the effects it returns, in order.

use super::*;

impl World {
    pub(super) fn tick_agent(&mut self, i: usize) {
        let now = self.local(i);
        let effects = self.agent(i).core.tick(now);
        self.perform(i, effects);
    }

    /// Steps node `i`'s core with `event` and performs what it returns; the answer to an
    /// operator request, if any.
    pub(super) fn step_agent(&mut self, i: usize, event: Event) -> Option<Response> {
        let now = self.local(i);
        let effects = self.agent(i).core.step(now, event);
        self.perform(i, effects)
    }

    pub(super) fn on_frame(&mut self, frame: Frame) {
        let i = frame.to;
        let sender = id(frame.from);
        let heartbeat: GuestHeartbeat = match postcard::from_bytes(&frame.payload) {
            Ok(hb) => hb,
            Err(e) => {
                let what = format!(
                    "a heartbeat of g{sender} to g{} did not decode at {:.2}s: {e}",
                    id(i),
                    self.now.as_secs_f64()
                );
                self.wire_errors.push(what);
                return;
            }
        };
        let a = self.agent(i);
        let Ok(accepted) = a
            .windows
            .entry(sender)
            .or_default()
            .accept(frame.incarnation, frame.sequence)
        else {
            return;
        };
        let event = Event::Heartbeat {
            sender,
            incarnation: frame.incarnation,
            accepted,
            heartbeat: Box::new(heartbeat),
        };
        self.step_agent(i, event);
    }

    /// Performs node `i`'s effects in order; returns the answer to an operator request
    /// among them.
    pub(super) fn perform(&mut self, i: usize, effects: Vec<Effect>) -> Option<Response> {
        let mut reply = None;
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::SendHeartbeats {
                    incarnation,
                    heartbeats,
                } => self.send_heartbeats(i, incarnation, &heartbeats),
                Effect::SendLink(message) => self.send_to_host(i, message),
                Effect::RunOp(op) => self.run_op(i, op),
                Effect::SaveState(state) => self.nodes[i].disk = state,
                Effect::NewIncarnation => {
                    self.nodes[i].incarnations += 1;
                    let incarnation = self.nodes[i].incarnations;
                    let now = self.local(i);
                    let fresh = Event::Incarnation { incarnation };
                    queue.extend(self.agent(i).core.step(now, fresh));
                }
                Effect::Rejoined { incarnation } => {
                    self.log(|| format!("g{} rejoins with incarnation {incarnation}", id(i)));
                    self.agent(i).sequences.clear();
                }
                Effect::Record(r) => {
                    if r.kind == "kill_requested" && !self.host_link {
                        // No host link: the operator is asked to kill it.
                        let target = r.detail["node"].as_str().and_then(|n| self.index_of(n));
                        if let Some(t) = target {
                            self.kill_requests.push((i, t, None));
                        }
                    }
                    self.log(|| format!("g{} {}: {}", id(i), r.kind, r.message));
                }
                Effect::AppEvent(e) => self.log(|| format!("g{} {e:?}", id(i))),
                Effect::Count(_) | Effect::Exit => {}
                Effect::Reply(response) => reply = Some(response),
            }
        }
        reply
    }

    /// The index of the node named `name` (`g<id>`).
    fn index_of(&self, name: &str) -> Option<usize> {
        let n: usize = name.strip_prefix('g')?.parse().ok()?;
        (1..=self.nodes.len()).contains(&n).then(|| n - 1)
    }

    /// Puts node `i`'s heartbeat on the wire to every partner (one interconnect).
    pub(super) fn send_heartbeats(&mut self, i: usize, incarnation: u64, hbs: &[GuestHeartbeat]) {
        let Some(hb) = hbs.first() else {
            return;
        };
        let payload = match postcard::to_allocvec(hb) {
            Ok(p) => p,
            Err(e) => {
                let what = format!("g{}'s heartbeat did not encode: {e}", id(i));
                self.wire_errors.push(what);
                return;
            }
        };
        let n = self.nodes.len();
        let a = self.nodes[i].agent.as_mut().expect("the agent runs");
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
                payload: payload.clone(),
            });
        }
    }
}
