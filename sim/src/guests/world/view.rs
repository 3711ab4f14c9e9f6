//! The operator's commands, and what can be seen of the world.

use super::*;

impl World {
    // ----- the operator -----

    /// An operator command for application `app`, given on node `i`.
    pub fn command(&mut self, i: usize, app: usize, command: Command) -> Result<String, String> {
        let app = self.specs[app].name.clone();
        let request = match command {
            Command::Switch(to) => Request::AppSwitch {
                app,
                node: to.map(|n| format!("g{n}")),
            },
            Command::Online => Request::AppOnline { app },
            Command::Offline => Request::AppOffline { app },
            Command::Clear => Request::AppClear { app },
            Command::Maintenance(on) => Request::AppMaintenance { app, on },
        };
        self.operator(i, request)
    }

    /// `hvctl node down` for node `target`, given on node `i`.
    pub fn node_down(&mut self, i: usize, target: usize) -> Result<String, String> {
        let node = format!("g{}", id(target));
        self.operator(i, Request::NodeDown { node })
    }

    /// An operator request on node `i`, and its answer.
    fn operator(&mut self, i: usize, request: Request) -> Result<String, String> {
        match self.step_agent(i, Event::Operator(request)) {
            Some(Response::Done { message }) => Ok(message),
            Some(Response::Refused { message }) => Err(message),
            other => Err(format!("the guest agent answered {other:?}")),
        }
    }

    // ----- what can be seen -----

    /// Application `app`'s state on node `i` as its engine shows it.
    pub fn app_state(&self, i: usize, app: usize) -> Option<AppState> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.core.engine().views()[app].local)
    }

    /// Application `app` as node `i`'s engine shows it, for failure messages.
    pub fn describe(&self, i: usize, app: usize) -> String {
        match &self.nodes[i].agent {
            Some(a) => format!("{:?}", a.core.engine().views()[app]),
            None => "no agent".into(),
        }
    }

    /// Application `app`'s placement as node `i` knows it.
    pub fn placement(&self, i: usize, app: usize) -> Option<Placement> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.core.engine().views()[app].placement.clone())
    }

    /// Node `j`'s state as node `i` sees it.
    pub fn node_state(&self, i: usize, j: usize) -> Option<GuestNodeState> {
        self.nodes[i].agent.as_ref()?.core.nodes().state_of(id(j))
    }

    /// What application `app`'s checked resources really do on node `i`.
    ///
    /// A NULLDETECTOR resource is never checked, not even when an agent starts: if its
    /// agent died in the middle of a start or stop sequence, nothing can tell whether
    /// it runs. So only checked resources count, besides starts in flight.
    pub fn watched(&self, i: usize, app: usize) -> Vec<bool> {
        let spec = &self.specs[app];
        (0..spec.resources.len())
            .filter(|&r| spec.resources[r].monitored)
            .map(|r| self.nodes[i].running[app][r])
            .collect()
    }

    /// Whether application `app` really runs on node `i` (a checked resource runs), or
    /// is being started there.
    pub fn active(&self, i: usize, app: usize) -> bool {
        let node = &self.nodes[i];
        node.power != Power::Off
            && (self.watched(i, app).contains(&true)
                || node
                    .flights
                    .iter()
                    .any(|f| f.op.app == app && f.op.kind == OpKind::Start))
    }

    /// Whether a start or a stop of application `app` runs on node `i` (checks run
    /// all the time).
    pub fn busy(&self, i: usize, app: usize) -> bool {
        self.nodes[i]
            .flights
            .iter()
            .any(|f| f.op.app == app && f.op.kind != OpKind::Check)
    }
}
