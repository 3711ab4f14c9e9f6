//! The hypervisor hvcluster controls its guests with: libvirt, through the `virt` crate.
//! Used by the host agent (`hv-hostd`) and by the Cmdline resources (`hv-guest`).
//! Every call blocks (libvirt is synchronous and may hang), so async callers run them off
//! their async threads (`tokio::task::spawn_blocking`) and bound them with a timeout.

pub mod fake;
mod hypervisor;
mod migrate;

use std::time::{Duration, Instant};

pub use hypervisor::{Hypervisor, OnProgress};
pub use migrate::{Migrated, Migration, MigrationMode, Progress};

use virt::connect::Connect;
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

/// A connection to libvirt, opened on first use and opened again after it failed.
#[derive(Debug)]
pub struct Libvirt {
    uri: String,
    conn: std::sync::Mutex<Option<Connect>>,
}

impl Libvirt {
    /// Libvirt at `uri` (e.g. `qemu:///system`, or `test:///default` in tests).
    pub fn new(uri: &str) -> Libvirt {
        // libvirt prints every error to stderr by default; ours are returned instead.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
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
        Self::find(conn, name)?.ok_or_else(|| format!("no domain {name:?} here"))
    }

    /// The domain `name` (a name or a UUID), or None when it is not defined here.
    fn find(conn: &Connect, name: &str) -> Result<Option<Domain>, String> {
        match conn.lookup_domain_by_name(name) {
            Ok(d) => return Ok(Some(d)),
            Err(e) if e.code() != Enum::Known(virt::error::ErrorNumber::NoDomain) => {
                return Err(format!("cannot look up domain {name:?}: {e}"))
            }
            Err(_) => {}
        }
        if name.len() == 36 {
            if let Ok(d) = conn.lookup_domain_by_uuid_string(name) {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Every domain defined or running here.
    pub fn list(&self) -> Result<Vec<DomainInfo>, String> {
        let conn = self.connect()?;
        let domains = conn
            .list_all_domains(0)
            .map_err(|e| format!("cannot list the domains of {}: {e}", self.uri))?;
        let mut out: Vec<DomainInfo> = domains.iter().map(info_of).collect();
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
        if let Err(e) = domain.destroy() {
            // Powered off meanwhile by someone else (a concurrent stop): off is off.
            match Self::find(&conn, name)? {
                Some(d) if state_of(&d).may_run() => {
                    return Err(format!("cannot destroy {name}: {e}"))
                }
                _ => return Ok(Destroyed::Now),
            }
        }
        // A transient domain no longer exists once off: that is off too.
        match Self::find(&conn, name)? {
            Some(d) if state_of(&d).may_run() => {
                Err(format!("{name} is still {:?} after destroy", state_of(&d)))
            }
            _ => Ok(Destroyed::Now),
        }
    }

    /// Starts the defined domain `name`. Resumes it when it is paused; nothing to do when
    /// it runs already.
    pub fn start(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        match state_of(&domain) {
            State::Running | State::ShuttingDown => Ok(()),
            State::Paused => domain
                .resume()
                .map(|_| ())
                .map_err(|e| format!("cannot resume {name}: {e}")),
            _ => domain
                .create()
                .map(|_| ())
                .map_err(|e| format!("cannot start {name}: {e}")),
        }
    }

    /// Starts a transient domain from its XML (kept on shared storage, for domains that are
    /// defined nowhere). Returns its name. Nothing to do when it runs here already.
    pub fn start_xml(&self, xml: &str) -> Result<String, String> {
        let conn = self.connect()?;
        let name = xml_name(xml)?;
        if let Some(d) = Self::find(&conn, &name)? {
            if state_of(&d).may_run() {
                return Ok(name);
            }
        }
        conn.create_domain_xml(xml, 0)
            .map_err(|e| format!("cannot start {name} from its XML: {e}"))?;
        Ok(name)
    }

    /// The domain `name`, or None when it is not defined (nor running) here.
    pub fn info(&self, name: &str) -> Result<Option<DomainInfo>, String> {
        let conn = self.connect()?;
        Ok(Self::find(&conn, name)?.map(|d| info_of(&d)))
    }

    /// Asks the guest to shut down, waits up to `timeout` for it to be off, then powers it
    /// off. Succeeds when it is already off, or not defined here.
    pub fn shutdown(&self, name: &str, timeout: Duration) -> Result<Stopped, String> {
        let conn = self.connect()?;
        let Some(domain) = Self::find(&conn, name)? else {
            return Ok(Stopped::NotDefined);
        };
        if !state_of(&domain).may_run() {
            return Ok(Stopped::WasNotRunning);
        }
        // A paused guest cannot act on the request: it goes straight to the power off.
        if state_of(&domain) != State::Paused && domain.shutdown().is_ok() {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                match domain.is_active() {
                    Ok(false) => return Ok(Stopped::Gracefully),
                    // A transient domain is gone once off.
                    Err(_) if Self::find(&conn, name)?.is_none() => return Ok(Stopped::Gracefully),
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        match self.destroy(name)? {
            Destroyed::Now => Ok(Stopped::Destroyed),
            Destroyed::WasNotRunning => Ok(Stopped::Gracefully),
        }
    }

    /// Pauses the running domain `name` (its memory stays; its CPUs stop).
    pub fn suspend(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        match state_of(&domain) {
            State::Paused => Ok(()),
            State::Running => domain
                .suspend()
                .map(|_| ())
                .map_err(|e| format!("cannot suspend {name}: {e}")),
            s => Err(format!("cannot suspend {name}: it is {s:?}, not running")),
        }
    }

    /// Lets the paused domain `name` run again.
    pub fn resume(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        match state_of(&domain) {
            State::Running => Ok(()),
            State::Paused => domain
                .resume()
                .map(|_| ())
                .map_err(|e| format!("cannot resume {name}: {e}")),
            s => Err(format!("cannot resume {name}: it is {s:?}, not paused")),
        }
    }

    /// Defines (or redefines) a persistent domain from its XML. Returns its name.
    pub fn define(&self, xml: &str) -> Result<String, String> {
        let conn = self.connect()?;
        let d = conn
            .define_domain_xml(xml)
            .map_err(|e| format!("cannot define the domain: {e}"))?;
        d.name()
            .map_err(|e| format!("defined, but cannot read its name: {e}"))
    }

    /// Removes the definition of `name` (it keeps running if it runs, as a transient
    /// domain). Nothing to do when it is not defined here.
    pub fn undefine(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        match Self::find(&conn, name)? {
            None => Ok(()),
            Some(d) if !d.is_persistent().unwrap_or(true) => Ok(()),
            Some(d) => d
                .undefine()
                .map(|_| ())
                .map_err(|e| format!("cannot undefine {name}: {e}")),
        }
    }

    /// Injects a non-maskable interrupt into `name`: a guest set up for it panics into its
    /// crash kernel and writes a dump.
    pub fn inject_nmi(&self, name: &str) -> Result<(), String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        // SAFETY: the pointer comes from a live `Domain` that outlives the call.
        let rc = unsafe { virt::sys::virDomainInjectNMI(domain.as_ptr(), 0) };
        if rc < 0 {
            let e = virt::error::Error::last_error();
            return Err(format!("cannot inject an NMI into {name}: {e}"));
        }
        Ok(())
    }

    /// The persistent definition of `name`, as XML (the migratable form).
    pub fn xml(&self, name: &str) -> Result<String, String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        domain
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_MIGRATABLE)
            .map_err(|e| format!("cannot read the XML of {name}: {e}"))
    }

    /// What this host can give its domains.
    pub fn capacity(&self) -> Result<Capacity, String> {
        let conn = self.connect()?;
        let info = conn
            .node_info()
            .map_err(|e| format!("cannot read the host's resources from {}: {e}", self.uri))?;
        Ok(Capacity {
            memory_kib: info.memory,
            cpus: info.cpus,
        })
    }
}

fn info_of(d: &Domain) -> DomainInfo {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A host description for libvirt's test driver (`test:///PATH`) with `domains` running
    /// and `defined` shut off, each with 1 GiB.
    fn test_driver_xml(domains: &[String], defined: &[String]) -> String {
        let mut out = String::from(
            "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>\
             <active>2</active><mhz>2000</mhz><model>lab</model></cpu>\n  <memory>8388608</memory>\n",
        );
        let running = domains.iter().map(|n| (n, false));
        let off = defined.iter().map(|n| (n, true));
        for (name, shut_off) in running.chain(off) {
            let xml = test_domain_xml(name, 1_048_576);
            let xml = if shut_off {
                xml.replace("</domain>", "<test:runstate>5</test:runstate></domain>")
            } else {
                xml
            };
            out.push_str(&format!("  {xml}\n"));
        }
        out.push_str("</node>\n");
        out
    }

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

    fn lab_host(running: &[&str], defined: &[&str]) -> (tempfile::TempDir, Libvirt) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.xml");
        let names = |l: &[&str]| l.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        std::fs::write(&path, test_driver_xml(&names(running), &names(defined))).unwrap();
        let hv = Libvirt::new(&format!("test://{}", path.display()));
        (dir, hv)
    }

    fn state(hv: &Libvirt, name: &str) -> Option<State> {
        hv.info(name).unwrap().map(|d| d.state)
    }

    #[test]
    fn shutdown_suspend_resume_and_their_answers_when_there_is_nothing_to_do() {
        let (_dir, hv) = lab_host(&["vm1", "vm2"], &["vm3"]);
        let vm1 = hv.info("vm1").unwrap().unwrap();
        assert_eq!(
            (vm1.memory_kib, vm1.vcpus, vm1.persistent),
            (1048576, 1, true)
        );
        assert_eq!(hv.info("nosuch").unwrap(), None);
        assert_eq!(hv.info(&uuid_of("vm2")).unwrap().unwrap().name, "vm2");

        hv.destroy("vm1").unwrap();
        hv.start("vm1").unwrap();
        assert!(hv.info("vm1").unwrap().unwrap().booted);
        hv.suspend("vm1").unwrap();
        assert_eq!(state(&hv, "vm1"), Some(State::Paused));
        hv.suspend("vm1").unwrap();
        hv.resume("vm1").unwrap();
        assert_eq!(state(&hv, "vm1"), Some(State::Running));
        assert!(
            !hv.info("vm1").unwrap().unwrap().booted,
            "resumed, not booted"
        );
        assert!(hv.resume("vm3").unwrap_err().contains("not paused"));
        assert!(hv.suspend("vm3").unwrap_err().contains("not running"));

        assert_eq!(
            hv.shutdown("vm1", Duration::from_secs(5)).unwrap(),
            Stopped::Gracefully
        );
        assert_eq!(state(&hv, "vm1"), Some(State::ShutOff));
        assert_eq!(
            hv.shutdown("vm1", Duration::from_secs(5)).unwrap(),
            Stopped::WasNotRunning
        );
        assert_eq!(
            hv.shutdown("nosuch", Duration::from_secs(5)).unwrap(),
            Stopped::NotDefined
        );
        // A paused guest cannot shut itself down: it is powered off.
        hv.suspend("vm2").unwrap();
        assert_eq!(
            hv.shutdown("vm2", Duration::from_secs(5)).unwrap(),
            Stopped::Destroyed
        );
        // Start resumes a paused domain and leaves a running one alone.
        hv.start("vm2").unwrap();
        hv.suspend("vm2").unwrap();
        hv.start("vm2").unwrap();
        assert_eq!(state(&hv, "vm2"), Some(State::Running));
        hv.start("vm2").unwrap();
    }

    #[test]
    fn define_undefine_and_transient_domains_from_xml() {
        let (_dir, hv) = lab_host(&[], &["vm1"]);
        let xml = hv.xml("vm1").unwrap();
        assert!(xml.contains("<name>vm1</name>"), "{xml}");
        hv.undefine("vm1").unwrap();
        assert_eq!(hv.info("vm1").unwrap(), None);
        hv.undefine("vm1").unwrap();

        // Transient: runs from the XML without a definition, gone once off.
        assert_eq!(hv.start_xml(&xml).unwrap(), "vm1");
        let vm1 = hv.info("vm1").unwrap().unwrap();
        assert_eq!((vm1.state, vm1.persistent), (State::Running, false));
        assert_eq!(hv.start_xml(&xml).unwrap(), "vm1");
        assert_eq!(
            hv.shutdown("vm1", Duration::from_secs(5)).unwrap(),
            Stopped::Gracefully
        );
        assert_eq!(hv.info("vm1").unwrap(), None);
        // Destroyed, a transient domain is gone: that is off, not a failure.
        hv.start_xml(&xml).unwrap();
        assert_eq!(hv.destroy("vm1").unwrap(), Destroyed::Now);
        hv.start_xml(&xml).unwrap();
        hv.suspend("vm1").unwrap();
        assert_eq!(
            hv.shutdown("vm1", Duration::from_secs(5)).unwrap(),
            Stopped::Destroyed
        );
        assert_eq!(hv.info("vm1").unwrap(), None);

        assert_eq!(hv.define(&xml).unwrap(), "vm1");
        assert_eq!(state(&hv, "vm1"), Some(State::ShutOff));
        hv.start("vm1").unwrap();
        assert!(hv.start_xml("<domain/>").unwrap_err().contains("no <name>"));
        assert!(hv.define("<domain>").unwrap_err().contains("cannot define"));

        let capacity = hv.capacity().unwrap();
        assert_eq!(
            capacity,
            Capacity {
                memory_kib: 8388608,
                cpus: 2
            }
        );
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
