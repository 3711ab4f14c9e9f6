//! Operator requests to the guest agent (`hvctl app ...`, `hvctl node down`).

use std::time::Duration;

use serde_json::json;

use super::GuestCore;
use crate::admin::{Request, Response};
use crate::application::Command;

impl GuestCore {
    /// Carries out an operator request and records what became of it.
    pub(super) fn operator(&mut self, now: Duration, request: Request) -> Response {
        let (what, result) = match &request {
            Request::NodeDown { node } => (format!("node down {node}"), self.node_down(now, node)),
            Request::AppSwitch { app, node } => {
                let target = match node {
                    Some(n) => match self.id_of(n) {
                        Some(id) => Some(id),
                        None => {
                            return Response::Refused {
                                message: format!("there is no node {n:?} in {}", self.cluster),
                            }
                        }
                    },
                    None => None,
                };
                (
                    format!("app switch {app}"),
                    self.command(now, app, Command::Switch(target)),
                )
            }
            Request::AppOnline { app } => (
                format!("app online {app}"),
                self.command(now, app, Command::Online),
            ),
            Request::AppOffline { app } => (
                format!("app offline {app}"),
                self.command(now, app, Command::Offline),
            ),
            Request::AppClear { app } => (
                format!("app clear {app}"),
                self.command(now, app, Command::Clear),
            ),
            Request::AppMaintenance { app, on } => (
                format!("app maintenance {app} {}", if *on { "on" } else { "off" }),
                self.command(now, app, Command::Maintenance(*on)),
            ),
            _ => (
                "?".to_string(),
                Err("not a guest operator command".to_string()),
            ),
        };
        let node = self.own_name();
        let accepted = result.is_ok();
        let verdict = match &result {
            Ok(m) => format!("done: {m}"),
            Err(m) => format!("refused: {m}"),
        };
        self.record(
            Some(node),
            "operator",
            format!("operator: hvctl {what}: {verdict}"),
            json!({ "command": what, "accepted": accepted }),
        );
        match result {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Refused { message },
        }
    }

    fn command(&mut self, now: Duration, app: &str, command: Command) -> Result<String, String> {
        let (message, actions) = self.engine.command(now, app, command)?;
        self.apply_apps(now, actions);
        Ok(message)
    }
}
