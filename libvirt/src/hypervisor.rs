//! What the host agent asks of a hypervisor, as a trait: [`crate::Libvirt`] is the real
//! one, [`crate::fake::FakeHypervisor`] holds domains in memory for tests. Every call
//! blocks; async callers run it off their async threads with a bound on its time.

use std::time::Duration;

use crate::{Capacity, Destroyed, DomainInfo, Libvirt, Migrated, Migration, Progress, Stopped};

/// Called with a running migration's progress.
pub type OnProgress = Box<dyn FnMut(Progress) + Send>;

/// A hypervisor's domains and what can be done to them.
pub trait Hypervisor: Send + Sync + std::fmt::Debug {
    /// Every domain defined or running here, by name.
    fn list(&self) -> Result<Vec<DomainInfo>, String>;
    /// What this host can give its domains.
    fn capacity(&self) -> Result<Capacity, String>;
    /// Domain `name` (a name or UUID), or None when it is not defined here.
    fn info(&self, name: &str) -> Result<Option<DomainInfo>, String>;
    /// Starts the defined domain (resumes a paused one; nothing when it runs).
    fn start(&self, name: &str) -> Result<(), String>;
    /// Starts a transient domain from its XML; its name.
    fn start_xml(&self, xml: &str) -> Result<String, String>;
    /// Asks the guest to shut down; powers it off when it has not within `timeout`.
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<Stopped, String>;
    /// Powers the domain off at once.
    fn destroy(&self, name: &str) -> Result<Destroyed, String>;
    /// Pauses the domain.
    fn suspend(&self, name: &str) -> Result<(), String>;
    /// Runs the paused domain again.
    fn resume(&self, name: &str) -> Result<(), String>;
    /// Sends the domain an NMI (its kernel may write a crash dump).
    fn inject_nmi(&self, name: &str) -> Result<(), String>;
    /// Moves a running or paused domain to another host; `progress` about every `every`.
    fn migrate(
        &self,
        m: &Migration,
        every: Duration,
        progress: OnProgress,
    ) -> Result<Migrated, String>;
    /// Moves a stopped domain's definition to another host.
    fn export(
        &self,
        name: &str,
        dest_uri: &str,
        rewrite: &[(String, String)],
        start: bool,
    ) -> Result<String, String>;
}

impl Hypervisor for Libvirt {
    fn list(&self) -> Result<Vec<DomainInfo>, String> {
        Libvirt::list(self)
    }
    fn capacity(&self) -> Result<Capacity, String> {
        Libvirt::capacity(self)
    }
    fn info(&self, name: &str) -> Result<Option<DomainInfo>, String> {
        Libvirt::info(self, name)
    }
    fn start(&self, name: &str) -> Result<(), String> {
        Libvirt::start(self, name)
    }
    fn start_xml(&self, xml: &str) -> Result<String, String> {
        Libvirt::start_xml(self, xml)
    }
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<Stopped, String> {
        Libvirt::shutdown(self, name, timeout)
    }
    fn destroy(&self, name: &str) -> Result<Destroyed, String> {
        Libvirt::destroy(self, name)
    }
    fn suspend(&self, name: &str) -> Result<(), String> {
        Libvirt::suspend(self, name)
    }
    fn resume(&self, name: &str) -> Result<(), String> {
        Libvirt::resume(self, name)
    }
    fn inject_nmi(&self, name: &str) -> Result<(), String> {
        Libvirt::inject_nmi(self, name)
    }
    fn migrate(
        &self,
        m: &Migration,
        every: Duration,
        progress: OnProgress,
    ) -> Result<Migrated, String> {
        Libvirt::migrate(self, m, every, progress)
    }
    fn export(
        &self,
        name: &str,
        dest_uri: &str,
        rewrite: &[(String, String)],
        start: bool,
    ) -> Result<String, String> {
        Libvirt::export(self, name, dest_uri, rewrite, start)
    }
}
