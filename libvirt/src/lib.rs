//! The hypervisor hvcluster controls its guests with: libvirt, through the `virt` crate.
//! Used by the host agent (`hv-hostd`) and by the Cmdline resources (`hv-guest`).
//! Every call blocks (libvirt is synchronous and may hang), so async callers run them off
//! their async threads (`tokio::task::spawn_blocking`) and bound them with a timeout.

mod domain;
pub mod fake;
mod hypervisor;
mod migrate;

use std::time::{Duration, Instant};

use domain::{info_of, state_of};
pub use domain::{
    test_domain_xml, uuid_of, xml_name, Capacity, Destroyed, DomainInfo, State, Stopped,
};
pub use hypervisor::{Hypervisor, OnProgress};
pub use migrate::{Migrated, Migration, MigrationMode, Progress};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::enumutil::Enum;

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
