//! The operator's commands, and what can be seen of the world.

use super::*;

impl World {
    // ----- the operator -----

    /// An operator command for application `app`, given on node `i`.
    pub fn command(&mut self, i: usize, app: usize, command: Command) -> Result<String, String> {
        let now = self.local(i);
        let name = self.specs[app].name.clone();
        let (message, actions) = self.agent(i).engine.command(now, &name, command)?;
        self.perform_apps(i, actions);
        self.flush_announce(i);
        Ok(message)
    }

    /// `hvctl node down` for node `target`, given on node `i` (as agent.rs does it).
    pub fn node_down(&mut self, i: usize, target: usize) -> Result<String, String> {
        let now = self.local(i);
        let a = self.agent(i);
        let node = id(target);
        let peer = a.membership.peers(now).into_iter().find(|p| p.node == node);
        if let Some(why) = a.nodes.refuse_down(node, peer.as_ref()) {
            return Err(format!("g{node} cannot be marked down: {why}"));
        }
        let incarnation = peer.and_then(|p| p.incarnation).unwrap_or(0);
        let change = a.nodes.prove_down(DownProof { node, incarnation });
        if let Some(change) = change {
            self.after_node_changes(i, vec![change]);
        }
        self.agent(i).announce = true;
        self.flush_announce(i);
        Ok(format!("g{node} is DOWN (operator's word)"))
    }

    // ----- what can be seen -----

    /// Application `app`'s state on node `i` as its engine shows it.
    pub fn app_state(&self, i: usize, app: usize) -> Option<AppState> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.engine.views()[app].local)
    }

    /// Application `app` as node `i`'s engine shows it, for failure messages.
    pub fn describe(&self, i: usize, app: usize) -> String {
        match &self.nodes[i].agent {
            Some(a) => format!("{:?}", a.engine.views()[app]),
            None => "no agent".into(),
        }
    }

    /// Application `app`'s placement as node `i` knows it.
    pub fn placement(&self, i: usize, app: usize) -> Option<Placement> {
        let a = self.nodes[i].agent.as_ref()?;
        Some(a.engine.views()[app].placement.clone())
    }

    /// Node `j`'s state as node `i` sees it.
    pub fn node_state(&self, i: usize, j: usize) -> Option<GuestNodeState> {
        self.nodes[i].agent.as_ref()?.nodes.state_of(id(j))
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
