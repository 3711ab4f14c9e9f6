//! Operator commands of fencing from the admin socket: `fence`, `confirm-down`,
//! `fence-history` and `fence-check`.
//!
//! They run inside the driver loop, which owns the fencing machine, so a command and a
//! tick never see the machine half-changed. Anything slow (reading the journal, calling
//! devices) runs on a task that answers through the client's oneshot, so the loop keeps
//! sending heartbeats meanwhile.

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use hvcluster_common::admin::{
    DeviceCheck, FenceHistory, FenceHistoryRecord, HostName, Request, Response,
};
use hvcluster_common::config::{ClusterConfig, DeviceKind, FenceDevice, HostEntry, NodeId};
use hvcluster_common::fencing::{FenceEvent, Refusal};
use hvcluster_common::membership::{HostState, LinkState, Membership};
use hvcluster_common::quorum::QuorumState;
use serde_json::json;
use tokio::sync::oneshot;

use crate::events::EventLog;
use crate::journal;
use hvcluster_common::host::{Effect, FenceCore};

/// What an operator command may read and change, lent by the driver loop.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The cluster configuration.
    pub config: &'a ClusterConfig,
    /// This host.
    pub me: NodeId,
    /// The membership, to say what was heard of a host.
    pub membership: &'a Membership,
    /// The host core's fencing.
    pub fence: &'a mut FenceCore,
    /// The fencing journal, for `fence-history`.
    pub journal: &'a std::path::Path,
    /// The event log, for the audit line of each command.
    pub events: &'a EventLog,
    /// Now, on the loop's clock.
    pub now: Duration,
}

/// An answer held back until the events its command caused are recorded, so a client
/// that reads the event log right after the answer finds them there.
#[derive(Debug)]
#[must_use = "the client waits for this answer"]
pub struct Answer(Option<(oneshot::Sender<Response>, Response)>);

impl Answer {
    fn now(reply: oneshot::Sender<Response>, response: Response) -> Answer {
        Answer(Some((reply, response)))
    }

    /// Sends the answer (a client that hung up meanwhile is no error).
    pub fn send(self) {
        if let Some((reply, response)) = self.0 {
            let _ = reply.send(response);
        }
    }
}

/// Serves one operator request; returns the fencing effects to perform and the answer
/// to send after them.
pub fn handle(
    cx: Ctx<'_>,
    request: Request,
    reply: oneshot::Sender<Response>,
) -> (Vec<Effect>, Answer) {
    let (command, host, outcome) = match request {
        Request::Fence { host } => {
            let outcome = fence(cx.config, cx.me, cx.membership, cx.fence, cx.now, &host);
            ("hvctl fence", host, outcome)
        }
        Request::ConfirmDown { host } => {
            let outcome = confirm_down(cx.config, cx.me, cx.membership, cx.fence, cx.now, &host);
            ("hvctl host confirm-down", host, outcome)
        }
        Request::FenceHistory => {
            spawn_history(cx.journal.to_path_buf(), cx.config, reply);
            return (Vec::new(), Answer(None));
        }
        Request::FenceCheck => {
            spawn_check(cx.config.fence_devices.clone(), reply);
            return (Vec::new(), Answer(None));
        }
        _ => {
            let message = "not a host operator command".to_string();
            return (Vec::new(), Answer::now(reply, Response::Error { message }));
        }
    };
    // Who asked what stays in the event log next to what it caused.
    let subject = cx.config.host(&host).map(|h| h.name.as_str());
    let (events, response, verdict) = match outcome {
        Ok((events, message)) => (events, Response::Done { message }, "done".to_string()),
        Err(message) => {
            let verdict = format!("refused: {message}");
            (Vec::new(), Response::Refused { message }, verdict)
        }
    };
    cx.events.record(
        subject,
        "operator",
        format!("operator: {command} {host}: {verdict}"),
        json!({ "command": command, "host": host, "accepted": matches!(response, Response::Done { .. }) }),
    );
    (events, Answer::now(reply, response))
}

/// The configured host called `name`, or a refusal naming every configured host.
pub fn resolve<'c>(hosts: &'c [HostEntry], name: &str) -> Result<&'c HostEntry, String> {
    hosts.iter().find(|h| h.name == name).ok_or_else(|| {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        format!(
            "there is no host named {name:?} in cluster.toml; the configured hosts are: {}",
            names.join(", ")
        )
    })
}

type Outcome = Result<(Vec<Effect>, String), String>;

fn fence(
    config: &ClusterConfig,
    me: NodeId,
    membership: &Membership,
    driver: &mut FenceCore,
    now: Duration,
    name: &str,
) -> Outcome {
    let host = resolve(&config.hosts, name)?;
    let id = host.node_id;
    if id == me {
        return Err(format!(
            "{name} is this host, and a host never fences itself; run hvctl fence {name} on \
             another host of the cluster"
        ));
    }
    if host.fence_levels.is_empty() {
        return Err(format!(
            "{name} has no fence_levels in cluster.toml, so nothing can power it off; add \
             fence levels for it (docs/fencing.md), or check by hand that it is off and run: \
             hvctl host confirm-down {name}"
        ));
    }
    let phase = |d: &FenceCore| {
        d.machine()
            .status()
            .into_iter()
            .find(|s| s.node == id)
            .map(|s| (s.phase, s.level.unwrap_or(1)))
    };
    if let Some((_, level)) = phase(driver).filter(|(p, _)| p == "fencing") {
        // A second run would power-cycle the same outlets concurrently with the first.
        return Err(format!(
            "{name} is being fenced already (level {level} runs); follow with hvctl events -f"
        ));
    }
    let events = driver
        .request_fence(now, id)
        .map_err(|r| refusal_text(config, membership, driver, now, name, r))?;
    let message = match phase(driver).map(|(p, _)| p).as_deref() {
        Some("awaiting-operator") => format!(
            "{name}: level 1 is manual: check that {name} is off, then run: hvctl host \
             confirm-down {name}"
        ),
        Some("waiting-kdump") => format!(
            "fencing {name} from level 1 (kdump: waiting for its panic notice); follow with \
             hvctl events -f"
        ),
        _ => format!("fencing {name} from level 1; follow with hvctl events -f"),
    };
    Ok((events, message))
}

fn confirm_down(
    config: &ClusterConfig,
    me: NodeId,
    membership: &Membership,
    driver: &mut FenceCore,
    now: Duration,
    name: &str,
) -> Outcome {
    let host = resolve(&config.hosts, name)?;
    if host.node_id == me {
        return Err(format!(
            "{name} is this host, which is evidently running; run hvctl host confirm-down \
             {name} on another host of the cluster"
        ));
    }
    let events = driver
        .confirm_down(host.node_id)
        .map_err(|r| refusal_text(config, membership, driver, now, name, r))?;
    let me = host_name(config, me);
    Ok((
        events,
        format!(
            "{name} is DOWN on an operator's confirmation on {me} as soon as that is written \
             to the fencing journal (event host_down, or fence_journal_failed if it cannot \
             be); then every host is told"
        ),
    ))
}

fn host_name(config: &ClusterConfig, id: NodeId) -> String {
    config
        .host_by_id(id)
        .map(|h| h.name.clone())
        .unwrap_or_else(|| format!("node{id}"))
}

/// What the machine refused, with what to do instead, in host names.
pub(crate) fn refusal_text(
    config: &ClusterConfig,
    membership: &Membership,
    driver: &FenceCore,
    now: Duration,
    name: &str,
    refusal: Refusal,
) -> String {
    match refusal {
        Refusal::NoQuorum => no_quorum_text(&membership.quorum()),
        Refusal::AlreadyDown(id) if driver.machine().down(id).is_none() => format!(
            "{name} is off with proof and its DOWN is being written to the fencing journal \
             (it is DOWN once written; if the journal cannot be written, hvctl status says \
             so); nothing to do"
        ),
        Refusal::AlreadyDown(id) => {
            let proof = driver
                .machine()
                .down(id)
                .map(|r| crate::fence::proof_text(r, |n| host_name(config, n)))
                .unwrap_or_else(|| "proof held".into());
            format!(
                "{name} is already DOWN ({proof}); nothing to do. It stays DOWN until it \
                 rejoins with a new incarnation"
            )
        }
        Refusal::UnknownHost(id) => {
            format!(
                "{name} (node {id}) is not tracked by this host's fencing; report this as a bug"
            )
        }
        Refusal::HeardAlive(id, how) => heard_alive_text(config, membership, now, name, id, &how),
    }
}

/// Why a host without quorum does not fence, with its vote count.
pub fn no_quorum_text(q: &QuorumState) -> String {
    let votes = if q.waiting_for_all {
        "it is waiting to see every host once (wait_for_all)".to_string()
    } else {
        format!("{} vote(s) present, {} needed", q.votes, q.needed)
    };
    format!(
        "this host has no quorum ({votes}): only a quorate partition fences, so a cut-off \
         minority cannot shoot the majority. Run the command on a host whose hvctl status \
         says quorum: yes"
    )
}

/// Milliseconds for people: `0.2 s`, `42 s`, `3 min`.
fn ago(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=179_999 => format!("{} s", ms / 1000),
        _ => format!("{} min", ms / 60_000),
    }
}

fn heard_alive_text(
    config: &ClusterConfig,
    membership: &Membership,
    now: Duration,
    name: &str,
    id: NodeId,
    how: &str,
) -> String {
    let Some(p) = membership.peers(now).into_iter().find(|p| p.node == id) else {
        return format!("{name} is heard alive ({how}); check hvctl status");
    };
    let heard = p.silent_for_ms.map_or("never heard".to_string(), |ms| {
        format!("last heard {} ago", ago(ms))
    });
    let links: Vec<&str> = p
        .links
        .iter()
        .zip(&config.interconnects)
        .filter(|(l, _)| **l == LinkState::Up)
        .map(|(_, ic)| ic.name.as_str())
        .collect();
    let links = if links.is_empty() {
        "no link up".to_string()
    } else {
        format!("links up: {}", links.join(", "))
    };
    let state = crate::describe::state_text(p.state);
    if p.must_rejoin {
        format!(
            "{name} failed, but its heartbeats arrive again ({heard}, {links}): its agent runs, \
             so the host is not off and cannot be confirmed down. Check its console; to stop it \
             anyway, fence it: hvctl fence {name}"
        )
    } else if p.state == HostState::Suspect {
        format!(
            "{name} is Suspect ({heard}), not yet Failed, so it may still be running and cannot \
             be confirmed down. Wait until hvctl status shows it Failed, check that it is off \
             (its console, BMC or PDU), and confirm again; or fence it: hvctl fence {name}"
        )
    } else {
        format!(
            "{name} is heard alive (state {state}, {heard}, {links}): a host whose heartbeats \
             arrive is running, so it cannot be confirmed down. Check that you named the right \
             host (hvctl status); to stop it anyway, fence it: hvctl fence {name}"
        )
    }
}

/// Reads the journal on a blocking thread (it may be long) and answers.
fn spawn_history(path: PathBuf, config: &ClusterConfig, reply: oneshot::Sender<Response>) {
    let hosts = host_names(config);
    tokio::task::spawn_blocking(move || {
        let _ = reply.send(history(&path, hosts));
    });
}

/// Every configured host's node id and name.
pub fn host_names(config: &ClusterConfig) -> Vec<HostName> {
    config
        .hosts
        .iter()
        .map(|h| HostName {
            node_id: h.node_id,
            name: h.name.clone(),
        })
        .collect()
}

/// The journal at `path` as a `fence-history` answer.
pub fn history(path: &std::path::Path, hosts: Vec<HostName>) -> Response {
    let contents = match journal::read_only::<FenceEvent>(path) {
        Ok(c) => c,
        Err(e) => {
            return Response::Error {
                message: format!("cannot read the fencing journal: {e}"),
            }
        }
    };
    // The loop may be appending right now; a torn last record is that write, not damage.
    let damage = contents.damage.filter(|d| !d.is_torn_tail()).map(|d| {
        format!(
            "{}: reading stopped at record {} (byte {}): {}; later records are not shown, and \
             the agent will refuse this journal at its next start (docs/fencing.md, The journal)",
            path.display(),
            d.record,
            d.offset,
            d.flaw
        )
    });
    Response::FenceHistory(FenceHistory {
        hosts,
        records: contents
            .records
            .into_iter()
            .map(|r| FenceHistoryRecord {
                seq: r.seq,
                unix_ms: r.unix_ms,
                event: r.body,
            })
            .collect(),
        damage,
    })
}

/// Runs `monitor` of every agent device at once on tasks, then answers.
fn spawn_check(devices: Vec<FenceDevice>, reply: oneshot::Sender<Response>) {
    tokio::spawn(async move {
        let devices = check(devices).await;
        let _ = reply.send(Response::FenceCheck { devices });
    });
}

/// Checks every device concurrently; results in configuration order.
pub async fn check(devices: Vec<FenceDevice>) -> Vec<DeviceCheck> {
    let runs: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let (name, kind) = (d.name.clone(), d.kind);
            (name, kind, tokio::spawn(check_one(d)))
        })
        .collect();
    let mut out = Vec::with_capacity(runs.len());
    for (name, kind, run) in runs {
        out.push(run.await.unwrap_or_else(|e| DeviceCheck {
            name,
            kind,
            ok: Some(false),
            elapsed_ms: None,
            summary: format!("the check task failed: {e}"),
        }));
    }
    out
}

async fn check_one(d: FenceDevice) -> DeviceCheck {
    if d.kind != DeviceKind::Agent {
        return DeviceCheck {
            summary: format!("not checkable (kind {})", kind_name(d.kind)),
            name: d.name,
            kind: d.kind,
            ok: None,
            elapsed_ms: None,
        };
    }
    let o = crate::fence_runner::monitor(&d).await;
    DeviceCheck {
        summary: if o.ok {
            "reachable".to_string()
        } else {
            o.summary(d.timeout_ms)
        },
        ok: Some(o.ok),
        elapsed_ms: Some(o.elapsed.as_millis() as u64),
        name: d.name,
        kind: d.kind,
    }
}

fn kind_name(k: DeviceKind) -> &'static str {
    match k {
        DeviceKind::Agent => "agent",
        DeviceKind::Kdump => "kdump",
        DeviceKind::Manual => "manual",
    }
}
