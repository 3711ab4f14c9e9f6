//! Host-side applications: the `[[application]]` entries of `cluster.toml`, run by the
//! host agents with the same engine as the guest agents (a VM made highly available is
//! an application whose resource is `hv-guest`). The hosts are the engine's nodes: a
//! host heard is UP, a failed host LEFTCLUSTER until fencing proves it DOWN, so an
//! application switches only once the host it ran on is proved off.

use std::time::Duration;

use hvcluster_common::admin::{Request, Response};
use hvcluster_common::application::{AppAction, Command, DownProof, GuestNodes};
use hvcluster_common::config::{ClusterConfig, NodeId};
use serde_json::json;

use super::{Agent, Input};
use crate::apps::Apps;
use crate::member::Member;

/// The engine and the hosts as its nodes.
#[derive(Debug)]
pub(super) struct HostApps {
    pub(super) apps: Apps,
    nodes: GuestNodes,
    /// Starts and stops running now on a host with a hypervisor: the domains are listed
    /// again when one ends, before the engine hears of it.
    pub(super) results: hvcluster_common::host::apps::ResultGate,
}

impl HostApps {
    /// The host-side applications of `config` on host `host`.
    pub(super) fn open<P>(config: &ClusterConfig, member: &Member<Input, P>, host: &str) -> Self {
        let mut env = vec![(
            "HV_ADMIN_SOCKET".to_string(),
            config.admin.socket.display().to_string(),
        )];
        if let Some(uri) = &config.hypervisor.uri {
            env.push(("HV_GUEST_URI".to_string(), uri.replace("{host}", host)));
        }
        let names = config
            .hosts
            .iter()
            .map(|h| (h.node_id, h.name.clone()))
            .collect();
        let apps = Apps::open(
            member,
            config.applications.clone(),
            |n| config.host(n).map(|h| h.node_id),
            &config.cluster.state_dir,
            names,
            env,
        );
        let mut apps = apps;
        apps.engine.set_down_command("hvctl host confirm-down");
        let ids: Vec<NodeId> = config.hosts.iter().map(|h| h.node_id).collect();
        let dead_after = Duration::from_millis(config.heartbeat.dead_after_ms);
        HostApps {
            apps,
            nodes: GuestNodes::new(member.me, &ids, dead_after),
            results: Default::default(),
        }
    }
}

impl Agent {
    /// Feeds the engine the hosts' states (membership, then fencing's proofs) and its
    /// tick; sends a heartbeat at once when placements or reports changed.
    pub(super) fn apps_tick(&mut self) {
        if self.host_apps.apps.is_empty() {
            return;
        }
        let now = self.now();
        let nodes = &mut self.host_apps.nodes;
        let mut changes = nodes.update(&self.core.membership().peers(now));
        for r in self.core.fencing().down_records() {
            let proof = DownProof {
                node: r.target,
                incarnation: r.incarnation,
            };
            changes.extend(nodes.prove_down(proof));
        }
        if !changes.is_empty() {
            let views = nodes.views();
            let actions = self.host_apps.apps.engine.set_nodes(now, views);
            self.perform_apps(actions);
        }
        let actions = self.host_apps.apps.engine.tick(now);
        self.perform_apps(actions);
        if std::mem::take(&mut self.host_apps.apps.announce) {
            self.send_heartbeats();
        }
    }

    /// The agent is shutting down: stops the applications running here (they switch
    /// where `shut_down` is among their triggers); the loop ends once they are stopped.
    pub(super) fn apps_shutdown(&mut self) {
        let host = self.member.own_name.clone();
        self.member.events.record(
            Some(&host),
            "agent_stopping",
            format!(
                "{host}: shutting down: stopping the host-side applications running here \
                 (reason SHUT)"
            ),
            json!({}),
        );
        let actions = self.host_apps.apps.engine.shutdown(self.now());
        self.perform_apps(actions);
        self.send_heartbeats();
    }

    /// What another host's engine said in its heartbeat.
    pub(super) fn apps_heard(
        &mut self,
        now: Duration,
        from: NodeId,
        incarnation: u64,
        gossip: &hvcluster_common::application::Gossip,
    ) {
        if self.host_apps.apps.is_empty() {
            return;
        }
        let actions = self
            .host_apps
            .apps
            .engine
            .on_gossip(now, from, incarnation, gossip);
        self.perform_apps(actions);
    }

    pub(super) fn perform_apps(&mut self, actions: Vec<AppAction>) {
        let hypervisor = self.libvirt.is_some();
        self.host_apps.results.running(&actions, hypervisor);
        let done = |id, outcome| Input::AppOpDone { id, outcome };
        let kills = self.host_apps.apps.perform(actions, &mut self.member, done);
        for n in kills {
            // HaltFlag: a stop failed on host n, which must be powered off before the
            // application may start elsewhere.
            let name = self.name(n);
            let outcome = if n == self.member.me {
                Err("it is this host: another host must fence it".to_string())
            } else {
                let now = self.now();
                let (membership, fence) = self.core.operator_parts();
                fence.request_fence(now, n).map_err(|r| {
                    let config = &self.config;
                    crate::operator::refusal_text(config, membership, fence, now, &name, r)
                })
            };
            match outcome {
                Ok(effects) => self.perform(effects),
                Err(why) => self.member.events.record(
                    Some(&name),
                    "kill_requested",
                    format!(
                        "{name} must be fenced (HaltFlag: a stop failed there) but this host \
                         cannot do it ({why}); make sure {name} is off, then run hvctl host \
                         confirm-down {name}"
                    ),
                    json!({ "host": name }),
                ),
            }
        }
    }

    /// `hvctl app ...` given to the host agent: host-side applications only.
    pub(super) fn app_command(&mut self, request: Request) -> Response {
        let now = self.now();
        let (what, app, command) = match request {
            Request::AppSwitch { app, node } => {
                let target = match node {
                    Some(n) => match self.config.host(&n) {
                        Some(h) => Some(h.node_id),
                        None => {
                            return Response::Refused {
                                message: format!(
                                    "there is no host {n:?} in {}",
                                    self.config.cluster.name
                                ),
                            }
                        }
                    },
                    None => None,
                };
                ("switch", app, Command::Switch(target))
            }
            Request::AppOnline { app } => ("online", app, Command::Online),
            Request::AppOffline { app } => ("offline", app, Command::Offline),
            Request::AppClear { app } => ("clear", app, Command::Clear),
            Request::AppMaintenance { app, on } => (
                if on {
                    "maintenance on"
                } else {
                    "maintenance off"
                },
                app,
                Command::Maintenance(on),
            ),
            _ => {
                return Response::Error {
                    message: "not an application command".into(),
                }
            }
        };
        let engine = &mut self.host_apps.apps.engine;
        let result = if engine.app_index(&app).is_none() {
            Err(format!(
                "there is no host-side application {app:?} in {} ([[application]] of \
                 cluster.toml); for an application of a guest cluster, run the command inside \
                 one of its guests (hvctl --socket {})",
                self.config.cluster.name,
                hvcluster_common::config::guest::DEFAULT_GUEST_ADMIN_SOCKET
            ))
        } else {
            engine
                .command(now, &app, command)
                .map(|(message, actions)| {
                    self.perform_apps(actions);
                    message
                })
        };
        let verdict = match &result {
            Ok(m) => format!("done: {m}"),
            Err(m) => format!("refused: {m}"),
        };
        let host = self.member.own_name.clone();
        self.member.events.record(
            Some(&host),
            "operator",
            format!("operator: hvctl app {what} {app}: {verdict}"),
            json!({ "command": format!("app {what} {app}"), "accepted": result.is_ok() }),
        );
        if std::mem::take(&mut self.host_apps.apps.announce) {
            self.send_heartbeats();
        }
        match result {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Refused { message },
        }
    }
}
