//! The hypervisor the host agent controls its guests with: libvirt, through the `virt`
//! crate. Every call blocks (libvirt is synchronous and may hang), so callers run them
//! off the async threads (`tokio::task::spawn_blocking`) and bound them with a timeout.

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
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

/// A connection to libvirt, opened on first use and opened again after it failed.
#[derive(Debug)]
pub struct Libvirt {
    uri: String,
    conn: std::sync::Mutex<Option<Connect>>,
}

impl Libvirt {
    /// Libvirt at `uri` (e.g. `qemu:///system`, or `test:///default` in tests).
    pub fn new(uri: &str) -> Libvirt {
        Libvirt {
            uri: uri.to_string(),
            conn: std::sync::Mutex::new(None),
        }
    }

    /// The open connection (a clone of the handle), opening it if needed.
    fn connect(&self) -> Result<Connect, String> {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = held.as_ref().filter(|c| c.is_alive().unwrap_or(false)) {
            return Ok(c.clone());
        }
        let c = Connect::open(Some(&self.uri))
            .map_err(|e| format!("cannot connect to libvirt at {}: {e}", self.uri))?;
        *held = Some(c.clone());
        Ok(c)
    }

    fn lookup(conn: &Connect, name: &str) -> Result<Domain, String> {
        conn.lookup_domain_by_name(name)
            .or_else(|_| conn.lookup_domain_by_uuid_string(name))
            .map_err(|e| format!("no domain {name:?} here: {e}"))
    }

    /// Every domain defined or running here.
    pub fn list(&self) -> Result<Vec<DomainInfo>, String> {
        let conn = self.connect()?;
        let domains = conn
            .list_all_domains(0)
            .map_err(|e| format!("cannot list the domains of {}: {e}", self.uri))?;
        let mut out: Vec<DomainInfo> = domains
            .iter()
            .map(|d| DomainInfo {
                name: d.name().unwrap_or_default(),
                uuid: d.uuid_string().unwrap_or_default(),
                state: state_of(d),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Powers domain `name` (a name or a UUID) off at once.
    pub fn destroy(&self, name: &str) -> Result<Destroyed, String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        if !state_of(&domain).may_run() {
            return Ok(Destroyed::WasNotRunning);
        }
        domain
            .destroy()
            .map_err(|e| format!("cannot destroy {name}: {e}"))?;
        match state_of(&domain) {
            s if s.may_run() => Err(format!("{name} is still {s:?} after destroy")),
            _ => Ok(Destroyed::Now),
        }
    }

    /// Starts the defined domain `name`.
    pub fn start(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        if state_of(&domain) == State::Running {
            return Ok(());
        }
        domain
            .create()
            .map_err(|e| format!("cannot start {name}: {e}"))
    }
}

fn state_of(d: &Domain) -> State {
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

/// A host description for libvirt's test driver (`test:///PATH`) with `domains` running
/// and `defined` shut off, each with a UUID derived from its name (so the same name is
/// the same domain on every host). Used by the lab to give each simulated host a
/// hypervisor.
pub fn test_driver_xml(domains: &[String], defined: &[String]) -> String {
    let mut out = String::from(
        "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>\
         <active>2</active><mhz>2000</mhz><model>lab</model></cpu>\n  <memory>8388608</memory>\n",
    );
    let running = domains.iter().map(|n| (n, None));
    let off = defined.iter().map(|n| (n, Some(5)));
    for (name, runstate) in running.chain(off) {
        out.push_str(&format!(
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
             <name>{name}</name><uuid>{}</uuid><memory>1048576</memory>\
             <vcpu>1</vcpu><os><type>hvm</type></os>{}</domain>\n",
            uuid_of(name),
            runstate
                .map(|s| format!("<test:runstate>{s}</test:runstate>"))
                .unwrap_or_default()
        ));
    }
    out.push_str("</node>\n");
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_driver_host_runs_the_domains_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.xml");
        std::fs::write(
            &path,
            test_driver_xml(&["vm1".into(), "vm2".into()], &["vm3".into()]),
        )
        .unwrap();
        let hv = Libvirt::new(&format!("test://{}", path.display()));
        let listed = hv.list().unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|d| (d.name.as_str(), d.state))
                .collect::<Vec<_>>(),
            vec![
                ("vm1", State::Running),
                ("vm2", State::Running),
                ("vm3", State::ShutOff)
            ]
        );
        hv.start("vm3").unwrap();
        assert!(hv.list().unwrap().iter().all(|d| d.state == State::Running));
        assert_eq!(listed[0].uuid, uuid_of("vm1"));
        assert_ne!(uuid_of("vm1"), uuid_of("vm2"));
    }

    /// Against libvirt's own test driver (in-process, one running domain `test`).
    #[test]
    fn destroy_powers_a_running_domain_off_and_says_when_it_was_not_running() {
        let hv = Libvirt::new("test:///default");
        let before = hv.list().unwrap();
        let test = before
            .iter()
            .find(|d| d.name == "test")
            .expect("domain test");
        assert_eq!(test.state, State::Running);
        assert_eq!(test.uuid.len(), 36);
        assert_eq!(hv.destroy("test").unwrap(), Destroyed::Now);
        let after = hv.list().unwrap();
        assert_eq!(
            after.iter().find(|d| d.name == "test").map(|d| d.state),
            Some(State::ShutOff)
        );
        assert_eq!(hv.destroy("test").unwrap(), Destroyed::WasNotRunning);
        hv.start("test").unwrap();
        assert_eq!(
            hv.list()
                .unwrap()
                .iter()
                .find(|d| d.name == "test")
                .map(|d| d.state),
            Some(State::Running)
        );
        assert!(hv
            .destroy("nosuch")
            .unwrap_err()
            .contains("no domain \"nosuch\""));
        assert!(Libvirt::new("bogus:///x")
            .list()
            .unwrap_err()
            .contains("cannot connect"));
    }
}
