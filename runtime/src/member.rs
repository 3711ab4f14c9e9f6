//! An agent as a member of its cluster, shared by the host and the guest agent: what a
//! driver loop has whatever it manages. Its node id and name, the other members' names,
//! its clock, event log and counters, its heartbeat link, the channel its tasks feed,
//! the tasks themselves and its admin socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hvcluster_common::config::NodeId;
use hvcluster_common::membership::{Action, HostState, Membership};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admin::{self, Dispatch};
use crate::counters::Counters;
use crate::events::EventLog;
use crate::incarnation;
use crate::intake::HeartbeatPayload;
use crate::net::{FrameSink, Received, Roster};
use crate::outbox::Outbox;
use crate::service::{self, Service};

/// Room in the input channel before the tasks wait for the driver loop.
const INPUT_QUEUE: usize = 4096;
/// Room in the queue of accepted heartbeats; beyond it they are dropped and counted
/// (only authenticated, fresh frames get there, a few per peer and interval).
const FRAME_QUEUE: usize = 1024;

/// A member of a cluster exchanging heartbeats `P`, whose driver loop takes input `I`.
pub struct Member<I, P> {
    /// This member's node id.
    pub me: NodeId,
    /// This member's name in the configuration.
    pub own_name: String,
    names: HashMap<NodeId, String>,
    frames: mpsc::Receiver<Received<P>>,
    /// Sends this member's heartbeats.
    pub outbox: Outbox<P>,
    /// What arrived, was dropped and was sent, for status.
    pub counters: Counters,
    /// The event log, observed by this member.
    pub events: EventLog,
    /// Where the tasks send input to the driver loop.
    pub tx: mpsc::Sender<I>,
    rx: mpsc::Receiver<I>,
    tasks: Vec<JoinHandle<()>>,
    admin_socket: Option<PathBuf>,
    origin: Instant,
    started_unix_ms: u64,
    service: Service,
}

impl<I, P> std::fmt::Debug for Member<I, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("me", &self.me)
            .field("own_name", &self.own_name)
            .finish_non_exhaustive()
    }
}

impl<I, P> Member<I, P>
where
    I: Send + 'static,
    P: HeartbeatPayload + Send + 'static,
{
    /// Starts the clock, opens the heartbeat link of `roster` (`what` names its sockets
    /// in errors) and starts receiving on it: accepted heartbeats come from
    /// [`Member::next_frame`].
    pub fn start(roster: Roster<'_>, what: &str) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (frames_tx, frames) = mpsc::channel(FRAME_QUEUE);
        let mut tasks = Vec::new();
        let me = roster.me();
        let names: HashMap<NodeId, String> = roster
            .names()
            .map(|(id, name)| (id, name.to_string()))
            .collect();
        let own_name = names[&me].clone();
        let counters = Counters::default();
        let events = EventLog::new(&own_name);
        let sink = FrameSink {
            tx: frames_tx,
            counters: counters.clone(),
            events: events.clone(),
        };
        let outbox = roster.open(what, sink, &mut tasks)?;
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(Member {
            me,
            events,
            own_name,
            names,
            frames,
            outbox,
            counters,
            tx,
            rx,
            tasks,
            admin_socket: None,
            origin: Instant::now(),
            started_unix_ms,
            service: Service::from_env(),
        })
    }

    /// Binds the admin socket at `path` and answers its clients with `dispatch`,
    /// recording operator commands in the audit log of `state_dir`; the socket is
    /// removed again by [`Member::stop`].
    pub fn serve_admin(
        &mut self,
        path: &Path,
        state_dir: &Path,
        dispatch: impl Dispatch,
    ) -> anyhow::Result<()> {
        let listener = admin::bind(path)?;
        self.admin_socket = Some(path.to_path_buf());
        let audit = self.audit_log(state_dir);
        self.spawn(admin::serve(listener, dispatch, self.events.clone(), audit));
        Ok(())
    }

    /// Serves the admin requests also over the virtio-serial port at `path`.
    pub fn serve_admin_port(&mut self, path: &Path, state_dir: &Path, dispatch: impl Dispatch) {
        let audit = self.audit_log(state_dir);
        self.spawn(admin::serve_port(
            path.to_path_buf(),
            dispatch,
            self.events.clone(),
            audit,
        ));
    }

    fn audit_log(&self, state_dir: &Path) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(state_dir.join(crate::audit::AUDIT_LOG), &self.own_name)
    }

    /// Runs `task` until [`Member::stop`].
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// The next input of the driver loop.
    pub async fn next_input(&mut self) -> Option<I> {
        self.rx.recv().await
    }

    /// The driver loop's two queues: accepted heartbeats (checked by the receiving
    /// tasks), to be served first, and every other input.
    pub fn queues(&mut self) -> (&mut mpsc::Receiver<Received<P>>, &mut mpsc::Receiver<I>) {
        (&mut self.frames, &mut self.rx)
    }

    /// Rejoins the cluster under a new incarnation (stored in `state_dir`) with the
    /// sequence numbers started afresh: records event `kind` with `message(own name,
    /// incarnation)` and returns what `membership` does next.
    pub fn rejoin(
        &mut self,
        membership: &mut Membership,
        state_dir: &Path,
        kind: &str,
        message: impl FnOnce(&str, u64) -> String,
    ) -> Vec<Action> {
        let incarnation = incarnation::next(state_dir);
        self.outbox.restart();
        self.events.record(
            Some(&self.own_name),
            kind,
            message(&self.own_name, incarnation),
            json!({ "incarnation": incarnation }),
        );
        membership.rejoin(self.now(), incarnation)
    }

    /// Stops every task and removes the admin socket.
    pub fn stop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(path) = &self.admin_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl<I, P> Member<I, P> {
    /// Counts one occurrence in `counter` and, at most once every 10 s, records an event
    /// of `kind` whose message says how many happened since the last one.
    pub fn record_limited(
        &mut self,
        counter: &str,
        subject: Option<&str>,
        kind: &str,
        message: impl FnOnce(u64) -> String,
        detail: serde_json::Value,
    ) {
        record_limited(
            &self.counters,
            &self.events,
            counter,
            (subject, kind),
            message,
            detail,
        );
    }

    /// Tells systemd, at each tick of the driver loop, that the loop runs (readiness at
    /// the first, then the watchdog) and what `membership` waits for; `member` is what
    /// the configuration calls a member (`host`, `node`).
    pub fn service_tick(&mut self, membership: &Membership, member: &str) {
        let names = &self.names;
        let origin = self.origin;
        self.service.alive(Instant::now(), || {
            let peers: Vec<(String, HostState)> = membership
                .peers(origin.elapsed())
                .iter()
                .map(|p| {
                    let name = names.get(&p.node).cloned();
                    (name.unwrap_or_else(|| format!("node{}", p.node)), p.state)
                })
                .collect();
            service::status_line(member, membership.quorum(), &peers)
        });
    }

    /// Time on this member's clock, which starts with [`Member::start`].
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Time on this member's clock at `instant`.
    pub fn clock_at(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.origin)
    }

    /// When the member started, in milliseconds since the Unix epoch.
    pub fn started_unix_ms(&self) -> u64 {
        self.started_unix_ms
    }

    /// The configured name of member `id`.
    pub fn configured_name(&self, id: NodeId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// The name of member `id`: as configured, else `node{id}`.
    pub fn name(&self, id: NodeId) -> String {
        self.configured_name(id)
            .map_or_else(|| format!("node{id}"), str::to_string)
    }
}

/// [`Member::record_limited`] for a task that holds clones of the member's counters and
/// event log: counts one in `counter` and, at most once every 10 s, records an event
/// (`subject`, `kind`) whose message says how many happened since the last one.
pub fn record_limited(
    counters: &Counters,
    events: &EventLog,
    counter: &str,
    (subject, kind): (Option<&str>, &str),
    message: impl FnOnce(u64) -> String,
    mut detail: serde_json::Value,
) {
    if let Some(since) = counters.bump_logged(counter, Instant::now()) {
        if let Some(map) = detail.as_object_mut() {
            map.insert("count_since_last".into(), since.into());
        }
        events.record(subject, kind, message(since), detail);
    }
}
