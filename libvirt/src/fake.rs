//! A hypervisor held in memory, for tests of what drives one: domains defined and
//! running, a capacity, and faults (every call fails, or hangs until released).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::hypervisor::{Hypervisor, OnProgress};
use crate::{uuid_of, Capacity, Destroyed, DomainInfo, Migrated, Migration, State, Stopped};

/// What the fake does when called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answers.
    #[default]
    None,
    /// Every call fails with this text.
    Fail(String),
    /// Every call blocks until the fault is changed.
    Hang,
}

#[derive(Debug, Default)]
struct World {
    domains: BTreeMap<String, DomainInfo>,
    fault: Fault,
    /// Calls made, as `operation name`.
    calls: Vec<String>,
}

/// A hypervisor of domains in memory.
#[derive(Debug)]
pub struct FakeHypervisor {
    world: Mutex<World>,
    changed: Condvar,
    capacity: Capacity,
}

impl Default for FakeHypervisor {
    fn default() -> Self {
        FakeHypervisor::new(Capacity {
            memory_kib: 16 * 1024 * 1024,
            cpus: 8,
        })
    }
}

impl FakeHypervisor {
    /// A hypervisor with nothing defined and `capacity` to give.
    pub fn new(capacity: Capacity) -> Self {
        FakeHypervisor {
            world: Mutex::default(),
            changed: Condvar::new(),
            capacity,
        }
    }

    /// Defines domain `name` of `memory_kib` and 1 vCPU, running or shut off.
    pub fn define(&self, name: &str, memory_kib: u64, running: bool) {
        let d = DomainInfo {
            name: name.to_string(),
            uuid: uuid_of(name),
            state: if running {
                State::Running
            } else {
                State::ShutOff
            },
            memory_kib,
            vcpus: 1,
            persistent: true,
            booted: running,
        };
        self.lock().domains.insert(name.to_string(), d);
    }

    /// From now on, calls do as `fault` says (a hung call returns once it is lifted).
    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
        self.changed.notify_all();
    }

    /// The calls made so far, as `operation name`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The state of `name`, if defined.
    pub fn state(&self, name: &str) -> Option<State> {
        self.lock().domains.get(name).map(|d| d.state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the call, waits out a hang, and gives the world unless calls fail.
    fn call(&self, what: &str, name: &str) -> Result<std::sync::MutexGuard<'_, World>, String> {
        let mut w = self.lock();
        w.calls
            .push(format!("{what} {name}").trim_end().to_string());
        while w.fault == Fault::Hang {
            w = self.changed.wait(w).unwrap_or_else(|p| p.into_inner());
        }
        match &w.fault {
            Fault::Fail(why) => Err(why.clone()),
            _ => Ok(w),
        }
    }

    /// Applies `change` to the domain `name` (a name or UUID).
    fn with<T>(
        &self,
        what: &str,
        name: &str,
        change: impl FnOnce(&mut DomainInfo) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut w = self.call(what, name)?;
        let d = w
            .domains
            .values_mut()
            .find(|d| d.name == name || d.uuid == name)
            .ok_or_else(|| format!("no domain {name:?} here"))?;
        change(d)
    }
}

impl Hypervisor for FakeHypervisor {
    fn list(&self) -> Result<Vec<DomainInfo>, String> {
        Ok(self.call("list", "")?.domains.values().cloned().collect())
    }
    fn capacity(&self) -> Result<Capacity, String> {
        drop(self.call("capacity", "")?);
        Ok(self.capacity)
    }
    fn info(&self, name: &str) -> Result<Option<DomainInfo>, String> {
        let w = self.call("info", name)?;
        Ok(w.domains
            .values()
            .find(|d| d.name == name || d.uuid == name)
            .cloned())
    }
    fn start(&self, name: &str) -> Result<(), String> {
        self.with("start", name, |d| {
            if d.state != State::Running {
                d.booted = d.state != State::Paused;
                d.state = State::Running;
            }
            Ok(())
        })
    }
    fn start_xml(&self, xml: &str) -> Result<String, String> {
        let name = crate::xml_name(xml)?;
        drop(self.call("start_xml", &name)?);
        self.define(&name, 512 * 1024, true);
        Ok(name)
    }
    fn shutdown(&self, name: &str, _timeout: Duration) -> Result<Stopped, String> {
        match self.with("shutdown", name, |d| {
            let was = d.state.may_run();
            d.state = State::ShutOff;
            Ok(was)
        }) {
            Ok(true) => Ok(Stopped::Gracefully),
            Ok(false) => Ok(Stopped::WasNotRunning),
            Err(e) if e.starts_with("no domain") => Ok(Stopped::NotDefined),
            Err(e) => Err(e),
        }
    }
    fn destroy(&self, name: &str) -> Result<Destroyed, String> {
        self.with("destroy", name, |d| {
            let was = d.state.may_run();
            d.state = State::ShutOff;
            d.booted = false;
            Ok(if was {
                Destroyed::Now
            } else {
                Destroyed::WasNotRunning
            })
        })
    }
    fn suspend(&self, name: &str) -> Result<(), String> {
        self.with("suspend", name, |d| {
            d.state = State::Paused;
            Ok(())
        })
    }
    fn resume(&self, name: &str) -> Result<(), String> {
        self.with("resume", name, |d| {
            d.state = State::Running;
            Ok(())
        })
    }
    fn inject_nmi(&self, name: &str) -> Result<(), String> {
        self.with("inject_nmi", name, |_| Ok(()))
    }
    fn migrate(&self, m: &Migration, _: Duration, _: OnProgress) -> Result<Migrated, String> {
        drop(self.call("migrate", &m.name)?);
        Err(format!("{} cannot move: this hypervisor is a fake", m.name))
    }
    fn export(
        &self,
        name: &str,
        _: &str,
        _: &[(String, String)],
        _: bool,
    ) -> Result<String, String> {
        drop(self.call("export", name)?);
        Err(format!("{name} cannot move: this hypervisor is a fake"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn domains_start_stop_and_are_listed() {
        let hv = FakeHypervisor::default();
        hv.define("vm1", 1024, false);
        assert_eq!(hv.list().unwrap()[0].state, State::ShutOff);
        hv.start("vm1").unwrap();
        assert_eq!(hv.state("vm1"), Some(State::Running));
        assert_eq!(hv.destroy("vm1").unwrap(), Destroyed::Now);
        assert_eq!(hv.destroy("vm1").unwrap(), Destroyed::WasNotRunning);
        assert_eq!(
            hv.shutdown("vm9", Duration::ZERO).unwrap(),
            Stopped::NotDefined
        );
        assert!(hv.start("vm9").unwrap_err().contains("no domain"));
        assert_eq!(
            hv.calls()[..2],
            ["list".to_string(), "start vm1".to_string()]
        );
    }

    #[test]
    fn a_hung_hypervisor_answers_once_released_and_a_failing_one_fails() {
        let hv = Arc::new(FakeHypervisor::default());
        hv.define("vm1", 1024, true);
        hv.set_fault(Fault::Hang);
        let theirs = hv.clone();
        let call = std::thread::spawn(move || theirs.destroy("vm1"));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!call.is_finished(), "a hung call blocks");
        hv.set_fault(Fault::None);
        assert_eq!(call.join().unwrap(), Ok(Destroyed::Now));
        hv.set_fault(Fault::Fail("libvirtd is gone".into()));
        assert_eq!(hv.list(), Err("libvirtd is gone".into()));
    }
}
