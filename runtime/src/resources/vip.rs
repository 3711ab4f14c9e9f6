//! Virtual-IP resources: an address brought up on an interface with gratuitous ARP
//! (IPv4) so neighbours learn where it now lives, and taken down on stop. The work is
//! done by `ip` and the resource-agents' `send_arp`, as IPaddr2 does.

use std::net::IpAddr;
use std::time::Duration;

use crate::child::{run_bounded, run_bounded_keeping};
use hvcluster_common::application::outcome::{OpKind, OpOutcome, ResourceState};
use tokio::process::Command;

use super::{execute, failed, OpRequest};

/// The gratuitous-ARP sender of the resource-agents package.
const SEND_ARP: &str = "/usr/libexec/heartbeat/send_arp";
/// ARP announcements after a start: pairs sent, and the time between them.
const ARP_REPEAT: u32 = 5;
const ARP_INTERVAL_MS: u32 = 200;
/// Most of `ip`'s answer about one address that is read. The answer names the address
/// asked for only, so it is a few hundred bytes; one longer than this cannot be judged.
const IP_ANSWER_BYTES: usize = 1 << 20;

/// The address and its prefix length, parsed from `ADDRESS/PREFIX`.
pub(super) fn parse_address(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("address {text:?} has no /PREFIX"))?;
    let ip: IpAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length {prefix:?} must be 0 to {max}"))?;
    Ok((ip, prefix))
}

/// Where the address is: on the interface, not, or the interface is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Up,
    Absent,
    NoInterface,
}

pub(super) async fn run(request: &OpRequest) -> OpOutcome {
    let r = &request.resource;
    let (Some(address), Some(interface)) = (r.address.as_deref(), r.interface.as_deref()) else {
        return OpOutcome::Failed {
            code: None,
            detail: format!(
                "{}/{}: address and interface are required",
                request.app, r.name
            ),
        };
    };
    let (ip, prefix) = match parse_address(address) {
        Ok(a) => a,
        Err(e) => {
            return OpOutcome::Failed {
                code: None,
                detail: format!("{}/{}: {e}", request.app, r.name),
            }
        }
    };
    let presence = match presence(request, interface, ip).await {
        Ok(Ok(p)) => p,
        // A check that cannot tell says so; it does not take the address for absent.
        Ok(Err(why)) if request.kind == OpKind::Check => {
            tracing::warn!(app = %request.app, resource = %r.name, "{why}");
            return OpOutcome::Done(ResourceState::Unknown);
        }
        Ok(Err(why)) => {
            return OpOutcome::Failed {
                code: None,
                detail: format!("{}/{}: {why}", request.app, r.name),
            }
        }
        Err(outcome) => return outcome,
    };
    match request.kind {
        OpKind::Check => OpOutcome::Done(match presence {
            Presence::Up => ResourceState::Online,
            Presence::Absent => ResourceState::Offline,
            Presence::NoInterface => ResourceState::Faulted,
        }),
        OpKind::Stop if presence != Presence::Up => OpOutcome::Done(ResourceState::Offline),
        OpKind::Start if presence == Presence::Up => {
            announce(interface, ip);
            OpOutcome::Done(ResourceState::Online)
        }
        OpKind::StartStandby => OpOutcome::Failed {
            code: None,
            detail: format!("{}/{}: a virtual IP has no standby", request.app, r.name),
        },
        OpKind::Start | OpKind::Stop => {
            let verb = if request.kind == OpKind::Start {
                "add"
            } else {
                "del"
            };
            let mut c = Command::new("ip");
            c.args(["addr", verb, &format!("{ip}/{prefix}"), "dev", interface]);
            let run = match execute(request, c).await {
                Ok(run) => run,
                Err(outcome) => return outcome,
            };
            match (request.kind, run.exit) {
                (OpKind::Start, Some(0)) => {
                    announce(interface, ip);
                    OpOutcome::Done(ResourceState::Online)
                }
                (OpKind::Stop, Some(0)) => OpOutcome::Done(ResourceState::Offline),
                _ => failed(request, &run),
            }
        }
    }
}

/// Whether `ip` is on `interface`, from `ip -j addr show dev INTERFACE to IP/LEN`: the
/// answer names that address only, however many the interface has. The interface is
/// looked up by `ip` itself, in this process's network namespace. `Ok(Err(why))` when
/// the answer cannot tell.
async fn presence(
    request: &OpRequest,
    interface: &str,
    ip: IpAddr,
) -> Result<Result<Presence, String>, OpOutcome> {
    let host_len = if ip.is_ipv4() { 32 } else { 128 };
    let mut c = Command::new("ip");
    c.args([
        "-j",
        "addr",
        "show",
        "dev",
        interface,
        "to",
        &format!("{ip}/{host_len}"),
    ]);
    let timeout = request.timeout().min(Duration::from_secs(30));
    let run = run_bounded_keeping(c, None, timeout, IP_ANSWER_BYTES)
        .await
        .map_err(|e| OpOutcome::Failed {
            code: None,
            detail: format!("cannot run ip: {e}"),
        })?;
    if run.timed_out {
        return Err(OpOutcome::TimedOut);
    }
    Ok(presence_from(
        run.exit,
        &run.stdout_tail,
        run.stdout_cut,
        ip,
        interface,
    ))
}

/// Where `ip` is, from `ip -j addr show` run with exit code `exit` and output `json`
/// (`cut`: longer than what was kept). A failing `ip` means the interface is missing;
/// an answer cut short or not JSON tells nothing, which is an error, never "absent".
pub(super) fn presence_from(
    exit: Option<i32>,
    json: &str,
    cut: bool,
    ip: IpAddr,
    interface: &str,
) -> Result<Presence, String> {
    if exit != Some(0) {
        return Ok(Presence::NoInterface);
    }
    if cut {
        return Err(format!(
            "cannot tell whether {ip} is on {interface}: ip's answer is over {IP_ANSWER_BYTES} bytes"
        ));
    }
    let found = addresses(json).map_err(|e| {
        format!("cannot tell whether {ip} is on {interface}: ip's answer is not what was expected ({e})")
    })?;
    Ok(if found.contains(&ip) {
        Presence::Up
    } else {
        Presence::Absent
    })
}

/// Every address in `ip -j addr show` output; an error when it is not that output.
pub(super) fn addresses(json: &str) -> Result<Vec<IpAddr>, String> {
    let links: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON list: {e}"))?;
    Ok(links
        .iter()
        .filter_map(|l| l.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .collect())
}

/// Gratuitous ARP for an IPv4 address, in the background: the start does not wait for
/// the announcements, and a missing sender only costs neighbours a stale entry.
fn announce(interface: &str, ip: IpAddr) {
    if !ip.is_ipv4() {
        return;
    }
    let mut c = Command::new(SEND_ARP);
    c.args([
        "-i",
        &ARP_INTERVAL_MS.to_string(),
        "-r",
        &ARP_REPEAT.to_string(),
        interface,
        &ip.to_string(),
        "auto",
        "not_used",
        "not_used",
    ]);
    let what = format!("{interface} {ip}");
    tokio::spawn(async move {
        match run_bounded(c, None, Duration::from_secs(10)).await {
            Ok(run) if run.exit == Some(0) => tracing::debug!(vip = %what, "gratuitous ARP sent"),
            Ok(run) => {
                tracing::warn!(vip = %what, exit = ?run.exit, stderr = %run.stderr_tail.trim(), "gratuitous ARP failed")
            }
            Err(e) => tracing::warn!(vip = %what, cause = %e, "cannot run {SEND_ARP}"),
        }
    });
}
