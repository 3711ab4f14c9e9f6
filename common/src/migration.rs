//! Cluster-aware migration: whether a domain may move now, and the migration lock.
//!
//! Pure. The host agent that runs the domain gives [`check`] what it knows (the domain,
//! the destination's state, capacity and domains, the migrations under way) and gets a
//! plan or the reason for a refusal, worded for the operator. While a migration runs its
//! [`MigrationLock`] is journaled by that agent (so a restart neither loses nor repeats
//! it) and carried in its heartbeats (so no host takes the domain's two instances during
//! the move for a double run).

mod section;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::hostlink::{DomainPresence, HostCapacity};
use crate::vmha::Room;

pub use section::Locks;

/// How a domain moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMode {
    /// Running, memory copied while it runs; it pauses for the last round only.
    Live,
    /// Paused first, moved while paused, resumed on the destination.
    Offline,
    /// A stopped domain's definition moves: defined there, undefined here.
    Export,
}

impl std::fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MigrationMode::Live => "live",
            MigrationMode::Offline => "offline",
            MigrationMode::Export => "export",
        })
    }
}

/// A migration under way, journaled by its source host and shared in its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MigrationLock {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// The host it leaves.
    pub from: NodeId,
    /// The host it goes to.
    pub to: NodeId,
    /// How it moves.
    pub mode: MigrationMode,
    /// It has ended; still published a few seconds, until both hosts listed their
    /// domains again (a domain on both meanwhile is no double run).
    #[serde(default)]
    pub ended: bool,
    /// The guest cluster of the guest agent in the domain, when one is linked: the
    /// destination greets it on the domain's channel as it arrives.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// What [`check`] is told about the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination<'a> {
    /// The host.
    pub host: NodeId,
    /// Its name.
    pub name: &'a str,
    /// Heard and a member (Up), not suspect, failed or DOWN.
    pub up: bool,
    /// In maintenance: it takes no domain.
    pub in_maintenance: bool,
    /// What its hypervisor can give, as it last reported.
    pub capacity: Option<HostCapacity>,
    /// Domains that may run there, as it last reported.
    pub domains: &'a [DomainPresence],
}

/// A migration that may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The lock to journal before it starts.
    pub lock: MigrationLock,
    /// Memory the destination has left once the domain is there, KiB.
    pub dest_free_after_kib: u64,
}

/// Whether `domain` (running here, on `me`, if it is `Some`) may move to `dest` now.
/// `locks` are the migrations under way anywhere in the cluster; `vcpu_ratio` bounds the
/// destination's virtual CPUs per CPU.
pub fn check(
    me: NodeId,
    name: &str,
    domain: Option<&DomainPresence>,
    mode: MigrationMode,
    dest: &Destination<'_>,
    locks: &[MigrationLock],
    vcpu_ratio: f64,
) -> Result<Plan, String> {
    if mode == MigrationMode::Export {
        return check_export(me, name, domain, dest, locks);
    }
    refuse_maintenance(dest)?;
    let Some(d) = domain else {
        return Err(format!(
            "{name} does not run on this host: run the migration on the host that runs it \
             (hvctl vm locate {name})"
        ));
    };
    if !matches!(d.state.as_str(), "Running" | "Paused") {
        return Err(format!(
            "{name} is {} here: only a running or paused domain moves",
            d.state
        ));
    }
    if dest.host == me {
        return Err(format!("{name} already runs on {}", dest.name));
    }
    if let Some(l) = locks.iter().find(|l| l.uuid == d.uuid && !l.ended) {
        return Err(format!(
            "{name} is being moved already ({} migration under way)",
            l.mode
        ));
    }
    if !dest.up {
        return Err(format!(
            "{} is not Up in the host cluster: a domain moves only to a live member",
            dest.name
        ));
    }
    if dest.domains.iter().any(|x| x.uuid == d.uuid) {
        return Err(format!(
            "{name} is also present on {} (an instance there may run): resolve that first",
            dest.name
        ));
    }
    let Some(cap) = dest.capacity else {
        return Err(format!(
            "{} has not reported what its hypervisor can give (is its [hypervisor] uri \
             set and libvirt answering?): its capacity cannot be checked",
            dest.name
        ));
    };
    // A domain on its way there is listed there already (paused, incoming).
    let room = Room {
        host: dest.host,
        memory_kib: cap.memory_kib,
        cpus: cap.cpus,
        used_memory_kib: dest.domains.iter().map(|x| x.memory_kib).sum(),
        used_vcpus: dest.domains.iter().map(|x| x.vcpus).sum(),
    };
    let need = room.used_memory_kib + d.memory_kib;
    if need > room.memory_kib {
        return Err(format!(
            "{} has {} MiB of memory left and {name} needs {} MiB: it would overcommit memory",
            dest.name,
            room.free_memory_kib() / 1024,
            d.memory_kib / 1024
        ));
    }
    let vcpus = room.used_vcpus + d.vcpus;
    if f64::from(vcpus) > vcpu_ratio * f64::from(room.cpus) {
        return Err(format!(
            "{} would run {vcpus} virtual CPUs on {} CPUs, above the ratio {vcpu_ratio} \
             ([vm_ha] vcpu_ratio)",
            dest.name, room.cpus
        ));
    }
    Ok(Plan {
        lock: MigrationLock {
            name: d.name.clone(),
            uuid: d.uuid.clone(),
            from: me,
            to: dest.host,
            mode,
            ended: false,
            cluster: None,
        },
        dest_free_after_kib: room.memory_kib - need,
    })
}

fn refuse_maintenance(dest: &Destination<'_>) -> Result<(), String> {
    if dest.in_maintenance {
        return Err(format!(
            "{0} is in maintenance: it takes no domain until hvctl host maintenance {0} off",
            dest.name
        ));
    }
    Ok(())
}

/// [`check`] for an export: the domain must not run (its libvirt checks that it is
/// defined and stopped here); the destination must be Up and not have it.
fn check_export(
    me: NodeId,
    name: &str,
    running: Option<&DomainPresence>,
    dest: &Destination<'_>,
    locks: &[MigrationLock],
) -> Result<Plan, String> {
    refuse_maintenance(dest)?;
    if let Some(d) = running {
        return Err(format!(
            "{name} is {} here: export moves a stopped domain (stop it first, or move it \
             live or offline)",
            d.state
        ));
    }
    if dest.host == me {
        return Err(format!("{name} is defined on {} already", dest.name));
    }
    if locks.iter().any(|l| l.name == name && !l.ended) {
        return Err(format!("{name} is being moved already"));
    }
    if !dest.up {
        return Err(format!(
            "{} is not Up in the host cluster: a domain moves only to a live member",
            dest.name
        ));
    }
    if dest.domains.iter().any(|x| x.name == name) {
        return Err(format!("{name} runs on {}: resolve that first", dest.name));
    }
    let free = dest.capacity.map_or(0, |c| {
        let used: u64 = dest.domains.iter().map(|x| x.memory_kib).sum();
        c.memory_kib.saturating_sub(used)
    });
    Ok(Plan {
        lock: MigrationLock {
            name: name.to_string(),
            uuid: String::new(),
            from: me,
            to: dest.host,
            mode: MigrationMode::Export,
            ended: false,
            cluster: None,
        },
        dest_free_after_kib: free,
    })
}

/// What to do with a domain that an offline migration interrupted by a restart of the
/// source's agent left paused at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausedAtSource {
    /// The destination says it does not run it (or it is fenced): resume it here.
    Resume,
    /// The destination runs it: leave the copy here paused; an operator removes it.
    LeavePaused,
    /// The destination has not said yet (not heard since the restart, or Failed but not
    /// DOWN): do nothing until it does.
    Wait,
}

/// What the destination of an interrupted migration says about it, as the source knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationFacts<'a> {
    /// Not heard since this agent started, or Failed and not yet DOWN.
    Unknown,
    /// Fenced: DOWN with proof, so it runs nothing.
    Down,
    /// Heard: the domains it reports.
    Lists(&'a [crate::hostlink::DomainPresence]),
}

/// Whether the domain `uuid`, found paused at the source after an interrupted offline
/// migration, may be resumed there: only when the destination is known not to run it,
/// since resuming a domain the destination already started would run it twice.
pub fn paused_at_source(uuid: &str, destination: DestinationFacts<'_>) -> PausedAtSource {
    match destination {
        DestinationFacts::Unknown => PausedAtSource::Wait,
        DestinationFacts::Down => PausedAtSource::Resume,
        DestinationFacts::Lists(domains) if domains.iter().any(|d| d.uuid == uuid) => {
            PausedAtSource::LeavePaused
        }
        DestinationFacts::Lists(_) => PausedAtSource::Resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, state: &str, mib: u64) -> DomainPresence {
        DomainPresence {
            name: name.into(),
            uuid: format!("u-{name}"),
            state: state.into(),
            memory_kib: mib * 1024,
            vcpus: 1,
        }
    }

    fn dest(domains: &[DomainPresence]) -> Destination<'_> {
        Destination {
            host: 2,
            name: "h2",
            up: true,
            in_maintenance: false,
            capacity: Some(HostCapacity {
                memory_kib: 3 * 1024 * 1024,
                cpus: 2,
            }),
            domains,
        }
    }

    #[test]
    fn a_running_domain_moves_to_a_live_host_with_room() {
        let vm = dom("vm1", "Running", 1024);
        let plan = check(
            1,
            "vm1",
            Some(&vm),
            MigrationMode::Live,
            &dest(&[]),
            &[],
            4.0,
        )
        .unwrap();
        assert_eq!((plan.lock.from, plan.lock.to), (1, 2));
        assert_eq!(plan.dest_free_after_kib, 2 * 1024 * 1024);
    }

    #[test]
    fn refusals_say_why() {
        let vm = dom("vm1", "Running", 1024);
        let big = [dom("big", "Running", 2560)];
        let refuse = |d: Option<&DomainPresence>, to: &Destination<'_>, locks: &[MigrationLock]| {
            check(1, "vm1", d, MigrationMode::Live, to, locks, 4.0).unwrap_err()
        };
        assert!(refuse(None, &dest(&[]), &[]).contains("does not run on this host"));
        let off = dom("vm1", "ShutOff", 1024);
        assert!(refuse(Some(&off), &dest(&[]), &[]).contains("only a running or paused"));
        assert!(refuse(Some(&vm), &dest(&big), &[]).contains("overcommit memory"));
        let down = Destination {
            up: false,
            ..dest(&[])
        };
        assert!(refuse(Some(&vm), &down, &[]).contains("not Up"));
        let me = Destination {
            host: 1,
            ..dest(&[])
        };
        assert!(refuse(Some(&vm), &me, &[]).contains("already runs on"));
        let lock = MigrationLock {
            name: "vm1".into(),
            uuid: "u-vm1".into(),
            from: 1,
            to: 3,
            mode: MigrationMode::Offline,
            ended: false,
            cluster: None,
        };
        let over = MigrationLock {
            ended: true,
            ..lock.clone()
        };
        assert!(
            check(
                1,
                "vm1",
                Some(&vm),
                MigrationMode::Live,
                &dest(&[]),
                &[over],
                4.0
            )
            .is_ok(),
            "an ended migration does not hold the domain"
        );
        assert!(refuse(Some(&vm), &dest(&[]), &[lock]).contains("offline migration under way"));
        let twin = [dom("vm1", "Paused", 1024)];
        assert!(refuse(Some(&vm), &dest(&twin), &[]).contains("also present on h2"));
        let unknown = Destination {
            capacity: None,
            ..dest(&[])
        };
        assert!(refuse(Some(&vm), &unknown, &[]).contains("capacity cannot be checked"));
        let export = |d: Option<&DomainPresence>, to: &Destination<'_>| {
            check(1, "vm1", d, MigrationMode::Export, to, &[], 4.0)
        };
        assert!(export(Some(&vm), &dest(&[]))
            .unwrap_err()
            .contains("export moves a stopped domain"));
        assert_eq!(
            export(None, &dest(&[])).unwrap().lock.mode,
            MigrationMode::Export
        );
        assert!(export(None, &dest(&twin))
            .unwrap_err()
            .contains("runs on h2"));
        let serviced = Destination {
            in_maintenance: true,
            ..dest(&[])
        };
        assert!(refuse(Some(&vm), &serviced, &[]).contains("h2 is in maintenance"));
        let many: Vec<DomainPresence> = (0..8)
            .map(|i| dom(&format!("v{i}"), "Running", 16))
            .collect();
        assert!(refuse(Some(&vm), &dest(&many), &[]).contains("above the ratio 4"));
    }

    #[test]
    fn a_paused_source_resumes_only_when_the_destination_does_not_run_it() {
        use super::{paused_at_source, DestinationFacts, PausedAtSource};
        use crate::hostlink::DomainPresence;
        let db = DomainPresence {
            name: "db".into(),
            uuid: "u-1".into(),
            state: "Running".into(),
            memory_kib: 1024,
            vcpus: 1,
        };
        let other = DomainPresence {
            name: "web".into(),
            uuid: "u-2".into(),
            ..db.clone()
        };
        let table = [
            (DestinationFacts::Unknown, PausedAtSource::Wait),
            (DestinationFacts::Down, PausedAtSource::Resume),
            (DestinationFacts::Lists(&[]), PausedAtSource::Resume),
            (
                DestinationFacts::Lists(std::slice::from_ref(&other)),
                PausedAtSource::Resume,
            ),
            (
                DestinationFacts::Lists(&[other.clone(), db.clone()]),
                PausedAtSource::LeavePaused,
            ),
        ];
        for (facts, expected) in table {
            assert_eq!(paused_at_source("u-1", facts), expected, "{facts:?}");
        }
    }
}
