//! What a domain is to hvcluster: its state and description as read from libvirt, the
//! answers of power operations, and the XML it is defined from.

use virt::domain::{Domain, DomainRunningReason, DomainState, DomainStateReason};
use virt::enumutil::Enum;

/// A domain's state, as libvirt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running (or blocked on a resource: still running).
    Running,
    /// Paused (suspended).
    Paused,
    /// Shutting down.
    ShuttingDown,
    /// Off.
    ShutOff,
    /// Crashed.
    Crashed,
    /// Suspended by guest power management.
    PmSuspended,
    /// No state, or one this build does not know.
    Unknown,
}

impl State {
    /// Whether the domain's CPUs can still run (not off and not crashed): a domain in
    /// this state may still be doing work.
    pub fn may_run(self) -> bool {
        !matches!(self, State::ShutOff | State::Crashed)
    }
}

/// One domain of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: String,
    /// Its state.
    pub state: State,
    /// Its memory (the most it may use), in KiB.
    pub memory_kib: u64,
    /// Its virtual CPUs.
    pub vcpus: u32,
    /// Whether it is defined (persistent) rather than only running (transient).
    pub persistent: bool,
    /// Running because it was booted (started, not migrated in, resumed or restored).
    pub booted: bool,
}

/// What a host can give its domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Memory, in KiB.
    pub memory_kib: u64,
    /// Physical CPUs (threads).
    pub cpus: u32,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The guest shut itself down when asked.
    Gracefully,
    /// The guest did not shut down within the timeout and was powered off.
    Destroyed,
    /// It was not running: nothing was done.
    WasNotRunning,
    /// It is not defined here at all: nothing was done.
    NotDefined,
}

/// What a destroy found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destroyed {
    /// It ran here and is off now.
    Now,
    /// It was defined here but not running: nothing was done. It may run on another
    /// host (after a migration), so this is no proof of anything.
    WasNotRunning,
}

pub(crate) fn info_of(d: &Domain) -> DomainInfo {
    let info = d.info().ok();
    DomainInfo {
        name: d.name().unwrap_or_default(),
        uuid: d.uuid_string().unwrap_or_default(),
        state: state_of(d),
        memory_kib: info.as_ref().map(|i| i.max_mem).unwrap_or(0),
        vcpus: info.as_ref().map(|i| i.nr_virt_cpu).unwrap_or(0),
        persistent: d.is_persistent().unwrap_or(true),
        booted: matches!(
            d.state(),
            Ok((
                Enum::Known(DomainState::Running),
                Enum::Known(DomainStateReason::Running(Enum::Known(
                    DomainRunningReason::Booted
                )))
            ))
        ),
    }
}

pub(crate) fn state_of(d: &Domain) -> State {
    match d.state() {
        Ok((Enum::Known(s), _)) => match s {
            DomainState::Running | DomainState::Blocked => State::Running,
            DomainState::Paused => State::Paused,
            DomainState::Shutdown => State::ShuttingDown,
            DomainState::Shutoff => State::ShutOff,
            DomainState::Crashed => State::Crashed,
            DomainState::PMSuspended => State::PmSuspended,
            DomainState::NoState => State::Unknown,
        },
        _ => State::Unknown,
    }
}

/// The `<name>` of a domain XML.
pub fn xml_name(xml: &str) -> Result<String, String> {
    let start = xml
        .find("<name>")
        .ok_or("the domain XML has no <name> element")?
        + "<name>".len();
    let len = xml[start..]
        .find("</name>")
        .ok_or("the domain XML's <name> is not closed")?;
    let name = xml[start..start + len].trim();
    if name.is_empty() {
        return Err("the domain XML's <name> is empty".into());
    }
    Ok(name.to_string())
}

/// The definition of a domain for libvirt's test driver, with a UUID derived from its
/// name (so the same name is the same domain on every host), `memory_kib` of memory and
/// one virtual CPU.
pub fn test_domain_xml(name: &str, memory_kib: u64) -> String {
    format!(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
         <name>{name}</name><uuid>{}</uuid><memory>{memory_kib}</memory>\
         <vcpu>1</vcpu><os><type>hvm</type></os></domain>",
        uuid_of(name)
    )
}

/// A UUID derived from a name (FNV-1a, twice), stable across hosts.
pub fn uuid_of(name: &str) -> String {
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
