//! The admin socket protocol: newline-delimited JSON over a root-only Unix socket.
//!
//! A client writes one [`Request`] per line; the agent answers each with one
//! [`Response`] line, except `events` with `follow`, which then streams one
//! [`Response::Event`] per line until the client hangs up.

pub mod audit;
pub mod client;
mod guest;
pub mod line;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{DeviceKind, NodeId};
use crate::fencing::FenceEvent;
use crate::membership::{HostState, LinkState, WatchdogVerdict};
use crate::quorum::QuorumState;

pub use guest::{AppLine, AppNodeLine, GuestNodeLine, GuestNodeState, GuestStatus, ResourceLine};

/// A request to the host agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The host's view of the cluster. Always allowed.
    Status,
    /// Recorded events after `since` (a sequence number; all when absent); with
    /// `follow`, keep streaming new ones. Always allowed.
    Events {
        /// Only events with a larger sequence number.
        #[serde(default)]
        since: Option<u64>,
        /// Keep the connection open and stream new events.
        #[serde(default)]
        follow: bool,
    },
    /// Fence a host now, from level 1, whatever its membership state (`hvctl fence`).
    /// Refused (with [`Response::Refused`]) when this host's partition has no quorum, for
    /// this host itself, for a host without fence levels, for a host already DOWN and
    /// while one of its levels runs. Answered with [`Response::Done`] once level 1 has
    /// started, not when it ends: the outcome arrives as events.
    Fence {
        /// Host name, as in `cluster.toml`.
        host: String,
    },
    /// An operator verified that the host is off (`hvctl host confirm-down`): declare it
    /// DOWN with the operator as proof. Allowed without quorum. Refused while the host is
    /// heard alive (Joining, Up, Suspect, or Failed but heard again), for this host
    /// itself and for a host already DOWN. Answered with [`Response::Done`] once the DOWN
    /// is journaled.
    ConfirmDown {
        /// Host name, as in `cluster.toml`.
        host: String,
    },
    /// The fencing journal of this host, oldest first. Always allowed.
    FenceHistory,
    /// Run `monitor` on every `agent` fence device at once. Always allowed; answered
    /// when every run ended (each is bounded by its device's `timeout_ms`).
    FenceCheck,
    /// Host agent: start the defined domain `name` on this host's hypervisor. Refused
    /// while any live host of the cluster (this one included) reports it running.
    VmStart {
        /// Domain name or UUID.
        name: String,
    },
    /// Host agent: stop domain `name` on this host: ask the guest to shut down and power
    /// it off after `timeout_s` (120 s when absent), or at once with `force`. Done when it
    /// is already off or not defined here.
    VmStop {
        /// Domain name or UUID.
        name: String,
        /// Seconds the guest has to shut itself down.
        #[serde(default)]
        timeout_s: Option<u64>,
        /// Power it off at once.
        #[serde(default)]
        force: bool,
    },
    /// Host agent: switch this host's maintenance on (evacuate every domain it runs and
    /// take none) or off (take domains again, and bring back those configured for
    /// failback). `host` must be this host.
    HostMaintenance {
        /// The host, by its name.
        host: String,
        /// On or off.
        on: bool,
    },
    /// Host agent: this host leaves the host cluster and its agent exits (as at SIGTERM):
    /// its host-side applications are stopped first, then its last heartbeats tell the
    /// other hosts it leaves, and they hold it Left (not Failed: no fence). Its domains
    /// run on. `host` must be this host. Answered with [`Response::Done`] at once.
    HostLeave {
        /// The host, by its name.
        host: String,
    },
    /// Host agent: move the domain `name`, which runs on this host, to host `to`
    /// (`hvctl vm migrate`). Answered when it has moved, or why it did not; progress goes
    /// to the event log (`migration_progress`).
    VmMigrate {
        /// Domain name or UUID.
        name: String,
        /// Destination host.
        to: String,
        /// Live or offline.
        mode: crate::migration::MigrationMode,
        /// Longest pause of a live migration, ms (`[migration] max_downtime_ms` if absent).
        #[serde(default)]
        max_downtime_ms: Option<u64>,
        /// Abort when not done by then, s (`[migration] timeout_s` if absent).
        #[serde(default)]
        timeout_s: Option<u64>,
        /// Offline: leave it paused on the destination.
        #[serde(default)]
        leave_paused: bool,
        /// Export: start it on the destination.
        #[serde(default)]
        start: bool,
        /// Only say what would happen.
        #[serde(default)]
        dry_run: bool,
    },
    /// Host agent: pause the running domain `name` on this host (its memory stays).
    VmSuspend {
        /// Domain name or UUID.
        name: String,
    },
    /// Host agent: let the paused domain `name` on this host run again.
    VmResume {
        /// Domain name or UUID.
        name: String,
    },
    /// Guest agent: switch an application to `node`, or to the next node in its
    /// priority order (`hvctl app switch`). Refused while it is in maintenance, when the
    /// node is not UP or the application is Faulted there, and while its current node is
    /// LEFTCLUSTER. Answered once the new placement is announced; the switch itself
    /// shows in events and status.
    AppSwitch {
        /// Application name.
        app: String,
        /// Target node; the best other node when absent.
        #[serde(default)]
        node: Option<String>,
    },
    /// Guest agent: bring an application Online on its best node (`hvctl app online`).
    AppOnline {
        /// Application name.
        app: String,
    },
    /// Guest agent: take an application Offline everywhere (`hvctl app offline`).
    AppOffline {
        /// Application name.
        app: String,
    },
    /// Guest agent: clear an application's faults on every node (`hvctl app clear`);
    /// the faulted nodes run its stop (reason STOP) and become Offline.
    AppClear {
        /// Application name.
        app: String,
    },
    /// Guest agent: maintenance mode on or off (`hvctl app maintenance`). While on, no
    /// automatic action is taken for the application; checks go on reporting.
    AppMaintenance {
        /// Application name.
        app: String,
        /// On or off.
        on: bool,
    },
    /// Guest agent: an operator verified that a LEFTCLUSTER node is off (`hvctl node
    /// down`): mark it DOWN so its applications can switch. Refused while the node is
    /// heard alive and for this node itself.
    NodeDown {
        /// Node name, as in `guest.toml`.
        node: String,
    },
}

impl Request {
    /// Whether the request is meant for a guest agent.
    pub fn is_guest_command(&self) -> bool {
        matches!(
            self,
            Request::AppSwitch { .. }
                | Request::AppOnline { .. }
                | Request::AppOffline { .. }
                | Request::AppClear { .. }
                | Request::AppMaintenance { .. }
                | Request::NodeDown { .. }
        )
    }
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// Answer to `status` from a host agent.
    Status(Box<HostStatus>),
    /// Answer to `status` from a guest agent.
    GuestStatus(Box<GuestStatus>),
    /// One event (answers `events`, one line each).
    Event(EventRecord),
    /// Marks the end of the history part of an `events` answer.
    EndOfHistory {
        /// Sequence number of the last event sent.
        last_seq: u64,
    },
    /// An operator command was carried out (`fence` started, `confirm-down` journaled).
    Done {
        /// What was done, and what to watch next.
        message: String,
    },
    /// An operator command was understood and refused: nothing was done.
    Refused {
        /// What was wrong, and what to do instead.
        message: String,
    },
    /// Answer to `fence-history`.
    FenceHistory(FenceHistory),
    /// Answer to `fence-check`.
    FenceCheck {
        /// One result per configured fence device, in configuration order.
        devices: Vec<DeviceCheck>,
    },
    /// The request could not be served.
    Error {
        /// What was wrong.
        message: String,
    },
}

/// One host's view of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Cluster name.
    pub cluster: String,
    /// This host's name.
    pub host: String,
    /// This host's node id.
    pub node_id: NodeId,
    /// This agent's incarnation.
    pub incarnation: u64,
    /// Milliseconds since the Unix epoch when this agent started.
    pub started_unix_ms: u64,
    /// This partition's quorum.
    pub quorum: QuorumState,
    /// This host's own load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Whether the agent runs with real-time scheduling.
    pub realtime: bool,
    /// Whether the agent's memory is locked.
    pub memory_locked: bool,
    /// Interconnect names, in the order of every `links` list.
    pub interconnects: Vec<String>,
    /// Every host of the cluster, this one included.
    pub hosts: Vec<HostLine>,
    /// Counters: frames received and dropped by reason, notices accepted and refused.
    pub counters: BTreeMap<String, u64>,
    /// Guests linked to this host and to the others (as they report them).
    #[serde(default)]
    pub guests: Vec<LinkedGuestLine>,
    /// Domains that may run on each host (this one from its hypervisor, the others
    /// from their heartbeats).
    #[serde(default)]
    pub domains: Vec<DomainLine>,
    /// Why this host's hypervisor cannot be asked, while it cannot (libvirt down or
    /// hanging): the host is degraded, its domain list is the last one it could read.
    #[serde(default)]
    pub hypervisor_problem: Option<String>,
    /// Host-side applications (`[[application]]` of cluster.toml), as this host sees them.
    #[serde(default)]
    pub applications: Vec<AppLine>,
    /// Migrations under way in the cluster, as their source hosts report them.
    #[serde(default)]
    pub migrations: Vec<crate::migration::MigrationLock>,
    /// Hosts in maintenance (this one's state in words first when it is).
    #[serde(default)]
    pub maintenance: Vec<String>,
    /// Why the fencing journal cannot be written, while it cannot (DOWN decisions wait
    /// for it).
    #[serde(default)]
    pub journal_problem: Option<String>,
}

/// A domain running (or paused) on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainLine {
    /// The host.
    pub host: String,
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// libvirt's state.
    pub state: String,
}

/// A guest linked to a host (the host link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedGuestLine {
    /// Host it is linked to.
    pub host: String,
    /// Its guest cluster.
    pub cluster: String,
    /// Its node name there.
    pub node: String,
    /// Its node id there.
    pub node_id: NodeId,
    /// Its domain, if it said (known for guests of this host only).
    pub domain: Option<String>,
}

/// One host as seen from the reporting host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLine {
    /// Host name.
    pub name: String,
    /// Node id.
    pub node_id: NodeId,
    /// Survival weight.
    pub weight: u32,
    /// This line describes the reporting host itself.
    pub local: bool,
    /// State (always Up for the reporting host).
    pub state: HostState,
    /// Milliseconds in that state.
    pub state_for_ms: u64,
    /// Link state per interconnect.
    pub links: Vec<LinkState>,
    /// Its agent's incarnation, if heard.
    pub incarnation: Option<u64>,
    /// Its load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Failed and heard again: must rejoin.
    pub must_rejoin: bool,
    /// A panic notice arrived from it.
    pub panic_noticed: bool,
    /// Milliseconds since it was last heard.
    pub silent_for_ms: Option<u64>,
    /// Its configuration differs.
    pub config_mismatch: bool,
    /// Where fencing of it stands (absent for the reporting host itself).
    #[serde(default)]
    pub fence: Option<crate::fencing::TargetStatus>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, growing within one agent incarnation.
    pub seq: u64,
    /// Microseconds since the Unix epoch when it happened.
    pub unix_us: u64,
    /// Host that recorded it.
    pub observer: String,
    /// Host it is about, if any.
    pub subject: Option<String>,
    /// Machine-readable kind, e.g. `host_state`, `link`, `quorum`, `frame_dropped`.
    pub kind: String,
    /// One line for people.
    pub message: String,
    /// Structured details.
    pub detail: serde_json::Value,
}

/// The fencing journal of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceHistory {
    /// Host name of every node id, for the ids inside the events. A list, not a map:
    /// integer map keys do not survive the tagged [`Response`] encoding.
    pub hosts: Vec<HostName>,
    /// Every intact record, oldest first.
    pub records: Vec<FenceHistoryRecord>,
    /// Damage that stopped reading before the end of the journal (the agent stops at
    /// its next start on such damage, so this is worth a look now).
    #[serde(default)]
    pub damage: Option<String>,
}

impl FenceHistory {
    /// The name of host `id`, or `node<id>` for an id no longer configured.
    pub fn host_name(&self, id: NodeId) -> String {
        self.hosts
            .iter()
            .find(|h| h.node_id == id)
            .map_or_else(|| format!("node{id}"), |h| h.name.clone())
    }
}

/// A node id and its host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostName {
    /// Node id.
    pub node_id: NodeId,
    /// Host name.
    pub name: String,
}

/// One record of the fencing journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceHistoryRecord {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch when it was journaled.
    pub unix_ms: u64,
    /// What happened.
    pub event: FenceEvent,
}

/// The result of checking one fence device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCheck {
    /// Device name.
    pub name: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// Whether `monitor` succeeded; `None` for kinds with nothing to call (kdump, manual).
    pub ok: Option<bool>,
    /// How long the run took; `None` when nothing ran.
    pub elapsed_ms: Option<u64>,
    /// One line: `reachable`, the failure (`(exit 1): ...`), or why it is not checkable.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fencing::{DownRecord, Proof};

    fn round_trip(r: &Response) {
        let line = serde_json::to_string(r).unwrap();
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, r, "{line}");
    }

    #[test]
    fn operator_answers_survive_the_wire() {
        round_trip(&Response::Done {
            message: "fencing h3 from level 1".into(),
        });
        round_trip(&Response::Refused {
            message: "no quorum".into(),
        });
        round_trip(&Response::FenceHistory(FenceHistory {
            hosts: vec![HostName {
                node_id: 3,
                name: "h3".into(),
            }],
            records: vec![FenceHistoryRecord {
                seq: 1,
                unix_ms: 1_735_689_600_000,
                event: FenceEvent::Down(DownRecord {
                    target: 3,
                    incarnation: 4,
                    proof: Proof::PowerOff {
                        devices: vec!["ipmi-h3".into()],
                    },
                    by: 1,
                }),
            }],
            damage: Some("record 2 damaged".into()),
        }));
        round_trip(&Response::FenceCheck {
            devices: vec![DeviceCheck {
                name: "crash".into(),
                kind: DeviceKind::Kdump,
                ok: None,
                elapsed_ms: None,
                summary: "not checkable (kind kdump)".into(),
            }],
        });
    }

    #[test]
    fn operator_requests_are_kebab_case_commands() {
        let fence: Request = serde_json::from_str(r#"{"cmd":"fence","host":"h3"}"#).unwrap();
        assert_eq!(fence, Request::Fence { host: "h3".into() });
        let confirm: Request =
            serde_json::from_str(r#"{"cmd":"confirm-down","host":"h3"}"#).unwrap();
        assert_eq!(confirm, Request::ConfirmDown { host: "h3".into() });
        for (line, r) in [
            (r#"{"cmd":"fence-history"}"#, Request::FenceHistory),
            (r#"{"cmd":"fence-check"}"#, Request::FenceCheck),
        ] {
            assert_eq!(serde_json::from_str::<Request>(line).unwrap(), r);
        }
    }
}
