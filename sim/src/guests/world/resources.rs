//! What each node's resources really do: operations take time, fail or hang when a
//! step injects it.

use super::*;

impl World {
    // ----- resources -----

    pub(super) fn run_op(&mut self, i: usize, op: ResourceOp) {
        let key = (i, op.app, op.resource, op_code(op.kind));
        let broken = match self.injections.get_mut(&key) {
            Some(inj) => {
                inj.remaining -= 1;
                let broken = inj.broken;
                if inj.remaining == 0 {
                    self.injections.remove(&key);
                }
                Some(broken)
            }
            None => None,
        };
        let took = match broken {
            Some(Broken::Hangs) => OP_TIMEOUT,
            _ => self.rng.millis(20, 1500),
        };
        self.log(|| {
            format!(
                "g{} runs {:?} a{}r{} ({took:?}{})",
                id(i),
                op.kind,
                op.app,
                op.resource,
                broken.map_or(String::new(), |b| format!(", {b:?}"))
            )
        });
        self.nodes[i].flights.push(Flight {
            done_at: self.now + took,
            op,
            broken,
        });
    }

    pub(super) fn complete_flights(&mut self, i: usize) {
        let now = self.now;
        let mut due: Vec<Flight> = Vec::new();
        let flights = std::mem::take(&mut self.nodes[i].flights);
        for f in flights {
            if f.done_at <= now {
                due.push(f);
            } else {
                self.nodes[i].flights.push(f);
            }
        }
        due.sort_by_key(|f| f.done_at);
        for f in due {
            let outcome = self.outcome(i, &f);
            self.log(|| {
                format!(
                    "g{} {:?} a{}r{} -> {outcome:?}",
                    id(i),
                    f.op.kind,
                    f.op.app,
                    f.op.resource
                )
            });
            self.step_agent(
                i,
                Event::OpDone {
                    id: f.op.id,
                    outcome,
                },
            );
        }
    }

    /// What the operation did to the resource, and what it reports.
    pub(super) fn outcome(&mut self, i: usize, f: &Flight) -> OpOutcome {
        let failed = |what: &str| OpOutcome::Failed {
            code: Some(1),
            detail: format!("{what} failed (injected)"),
        };
        let partly = self.rng.chance(50);
        let r = &mut self.nodes[i].running[f.op.app][f.op.resource];
        match (f.op.kind, f.broken) {
            (OpKind::Start, None) => {
                *r = true;
                OpOutcome::Done(ResourceState::Online)
            }
            (OpKind::Start, Some(b)) => {
                // A start that fails or is killed may have got the resource running.
                *r = partly;
                match b {
                    Broken::Fails => failed("start"),
                    Broken::Hangs => OpOutcome::TimedOut,
                }
            }
            (OpKind::Stop, None) => {
                *r = false;
                OpOutcome::Done(ResourceState::Offline)
            }
            (OpKind::Stop, Some(Broken::Fails)) => failed("stop"),
            (OpKind::Stop, Some(Broken::Hangs)) => OpOutcome::TimedOut,
            (OpKind::Check, None) => OpOutcome::Done(if *r {
                ResourceState::Online
            } else {
                ResourceState::Offline
            }),
            (OpKind::Check, Some(Broken::Fails)) => failed("check"),
            (OpKind::Check, Some(Broken::Hangs)) => OpOutcome::TimedOut,
            (OpKind::StartStandby, _) => OpOutcome::Done(ResourceState::Standby),
        }
    }
}
