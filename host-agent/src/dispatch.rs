//! The host agent's admin dispatcher: what the admin server of the runtime
//! ([`hvcluster_runtime::admin`]) hands a request to. Operator commands go to the driver
//! loop; guest-cluster commands are refused with where to run them.

use hvcluster_common::admin::{Request, Response};
use tokio::sync::mpsc;

use crate::admin::{forward, Dispatch};
use crate::agent::Input;

/// The host agent's dispatcher: hands requests to the driver loop.
#[derive(Debug, Clone)]
pub struct HostDispatch(pub mpsc::Sender<Input>);

impl Dispatch for HostDispatch {
    async fn dispatch(&self, request: Request) -> Response {
        match request {
            request @ (Request::Status
            | Request::Fence { .. }
            | Request::ConfirmDown { .. }
            | Request::FenceHistory
            | Request::FenceCheck
            | Request::VmStart { .. }
            | Request::VmStop { .. }
            | Request::VmSuspend { .. }
            | Request::VmResume { .. }
            | Request::VmMigrate { .. }
            | Request::HostMaintenance { .. }
            | Request::HostLeave { .. }
            | Request::AppSwitch { .. }
            | Request::AppOnline { .. }
            | Request::AppOffline { .. }
            | Request::AppClear { .. }
            | Request::AppMaintenance { .. }) => {
                forward(&self.0, request, Input::Admin, |s| {
                    Response::Status(Box::new(s))
                })
                .await
            }
            request => {
                let message = format!(
                    "{} is a guest-cluster command and this is the host agent: run it inside \
                     a guest of the guest cluster (hvctl --socket {})",
                    serde_json::to_value(&request)
                        .ok()
                        .and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_string))
                        .unwrap_or_default(),
                    hvcluster_common::config::guest::DEFAULT_GUEST_ADMIN_SOCKET
                );
                Response::Refused { message }
            }
        }
    }
}
