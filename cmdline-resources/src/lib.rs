//! `hv-guest`: a libvirt guest as a Cmdline resource. Its exit codes follow the Cmdline
//! contract, so a host-side userApplication (or any cluster manager that runs Cmdline
//! scripts) can start, stop and check a guest:
//!
//! - `start`: 0 when the guest runs here afterwards (also when it ran already); 1 when it
//!   cannot be started, and when it runs on another host of the cluster (refused: it
//!   would run twice).
//! - `stop`: 0 when the guest is off afterwards (also when it was off already, or is not
//!   defined here); 1 when it cannot be stopped.
//! - `check` (with ALLEXITCODES): 0 Online (running, paused or shutting down), 1 Offline
//!   (off, or not defined here), 2 Faulted (crashed), 3 Unknown (libvirt does not answer).

use std::time::Duration;

use hvcluster_common::admin::{DomainLine, Request, Response};
use hvcluster_libvirt::{DomainInfo, Libvirt, State, Stopped};

/// Cmdline check exit codes (ALLEXITCODES).
pub mod code {
    /// Online.
    pub const ONLINE: u8 = 0;
    /// Offline.
    pub const OFFLINE: u8 = 1;
    /// Faulted.
    pub const FAULTED: u8 = 2;
    /// Unknown.
    pub const UNKNOWN: u8 = 3;
}

/// The check verdict for what libvirt says about the domain (None: not defined here).
pub fn check_code(domain: Option<&DomainInfo>) -> (u8, String) {
    let Some(d) = domain else {
        return (code::OFFLINE, "not defined on this host".into());
    };
    match d.state {
        State::Running | State::Paused | State::ShuttingDown | State::PmSuspended => {
            (code::ONLINE, format!("{:?}", d.state).to_lowercase())
        }
        State::ShutOff => (code::OFFLINE, "shut off".into()),
        State::Crashed => (code::FAULTED, "crashed".into()),
        State::Unknown => (code::UNKNOWN, "in a state libvirt does not name".into()),
    }
}

/// `check DOMAIN`: the exit code and one line saying why.
pub fn check(hv: &Libvirt, domain: &str) -> (u8, String) {
    match hv.info(domain) {
        Ok(d) => {
            let (code, why) = check_code(d.as_ref());
            (code, format!("{domain}: {why}"))
        }
        Err(e) => (code::UNKNOWN, format!("{domain}: unknown: {e}")),
    }
}

/// `stop DOMAIN`: shut down gracefully within `timeout`, then power off.
pub fn stop(hv: &Libvirt, domain: &str, timeout: Duration) -> Result<String, String> {
    Ok(match hv.shutdown(domain, timeout)? {
        Stopped::Gracefully => format!("{domain} shut down"),
        Stopped::Destroyed => format!(
            "{domain} did not shut down within {} s and was powered off",
            timeout.as_secs()
        ),
        Stopped::WasNotRunning => format!("{domain} was not running"),
        Stopped::NotDefined => format!("{domain} is not defined here: nothing to stop"),
    })
}

/// The hosts other than `local` that report `domain` (a name or UUID) as theirs, among
/// the host agent's domain lines. The agent lists its own hypervisor's domains and those
/// of every other host not proved down, so a host that failed but is not fenced yet
/// still counts.
pub fn elsewhere(local: &str, lines: &[DomainLine], domain: &str) -> Vec<String> {
    let mut hosts: Vec<String> = lines
        .iter()
        .filter(|d| (d.name == domain || d.uuid == domain) && d.host != local)
        .map(|d| d.host.clone())
        .collect();
    hosts.dedup();
    hosts
}

/// Asks the host agent at `socket` where `domain` runs; an error when it cannot answer.
pub fn ask_agent(socket: &std::path::Path, domain: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = hvcluster_common::admin::client::Connection::open(socket)?;
    match conn.request(&Request::Status)? {
        Response::Status(s) => Ok(elsewhere(&s.host, &s.domains, domain)),
        Response::GuestStatus(_) => anyhow::bail!(
            "{} is a guest agent's socket: hv-guest runs on a hypervisor and asks its host agent",
            socket.display()
        ),
        other => anyhow::bail!("unexpected answer from the host agent: {other:?}"),
    }
}

/// `start DOMAIN`, once the cluster said it runs nowhere else: from its definition, or
/// from `xml` (a transient domain) when given.
pub fn start(hv: &Libvirt, domain: &str, xml: Option<&str>) -> Result<String, String> {
    match xml {
        Some(xml) => {
            let name = hvcluster_libvirt::xml_name(xml)?;
            if name != domain {
                return Err(format!(
                    "the XML describes domain {name:?}, not {domain:?}: refusing to start it"
                ));
            }
            hv.start_xml(xml)?;
        }
        None => hv.start(domain)?,
    }
    Ok(format!("{domain} runs on this host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(state: State) -> DomainInfo {
        DomainInfo {
            name: "vm1".into(),
            uuid: hvcluster_libvirt::uuid_of("vm1"),
            state,
            memory_kib: 1024,
            vcpus: 1,
            persistent: true,
            booted: true,
        }
    }

    #[test]
    fn every_libvirt_state_has_its_cmdline_check_code() {
        let code = |s| check_code(Some(&domain(s))).0;
        assert_eq!(code(State::Running), code::ONLINE);
        assert_eq!(code(State::Paused), code::ONLINE);
        assert_eq!(code(State::ShuttingDown), code::ONLINE);
        assert_eq!(code(State::PmSuspended), code::ONLINE);
        assert_eq!(code(State::ShutOff), code::OFFLINE);
        assert_eq!(code(State::Crashed), code::FAULTED);
        assert_eq!(code(State::Unknown), code::UNKNOWN);
        assert_eq!(check_code(None).0, code::OFFLINE);
        let hv = Libvirt::new("test+unix:///default?socket=/nonexistent/sock");
        let (c, why) = check(&hv, "vm1");
        assert_eq!(c, code::UNKNOWN, "{why}");
    }

    #[test]
    fn elsewhere_names_the_other_hosts_that_report_the_domain() {
        let line = |host: &str, name: &str, uuid: &str| DomainLine {
            host: host.into(),
            name: name.into(),
            uuid: uuid.into(),
            state: "Running".into(),
        };
        let lines = [
            line("h1", "vm1", "u1"),
            line("h2", "vm2", "u2"),
            line("h3", "vm2", "u2"),
        ];
        assert!(elsewhere("h1", &lines, "vm1").is_empty());
        assert_eq!(elsewhere("h2", &lines, "vm1"), vec!["h1"]);
        assert_eq!(elsewhere("h1", &lines, "u2"), vec!["h2", "h3"]);
        assert_eq!(elsewhere("h2", &lines, "vm2"), vec!["h3"]);
        assert!(elsewhere("h1", &lines, "vm9").is_empty());
    }
}
