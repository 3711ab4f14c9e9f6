//! What the host link holds before a guest is authenticated: the connection caps (the
//! decision is [`Admission`], in the common core), the registration deadline, and the
//! tally of refusals the accept loop reports to the agent at most once a second.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hvcluster_common::config::HostLinkListenSection;
use hvcluster_common::link_admission::{Admission, AdmissionLimits, Refusal};

/// The limits of the host link's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Connection caps.
    pub admission: AdmissionLimits,
    /// Time a connection has to complete its registration.
    pub register_timeout: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits::from_config(&HostLinkListenSection::default())
    }
}

impl LinkLimits {
    /// The limits `[host_link]` sets.
    pub fn from_config(section: &HostLinkListenSection) -> Self {
        LinkLimits {
            admission: section.admission(),
            register_timeout: Duration::from_millis(section.register_timeout_ms),
        }
    }
}

/// The admission state shared by the accept loop and the connections it admitted.
pub type SharedAdmission = Arc<Mutex<Admission>>;

/// The place an admitted connection holds; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: SharedAdmission,
    source: IpAddr,
}

impl Slot {
    /// Takes a place for a connection from `source`, or says why there is none.
    pub fn take(admission: &SharedAdmission, source: IpAddr) -> Result<Slot, Refusal> {
        lock(admission).admit(source)?;
        Ok(Slot {
            admission: admission.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.admission).release(self.source);
    }
}

fn lock(a: &SharedAdmission) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

/// Interval of the accept loop's reports of refused connections.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Refusals counted since the last report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalTally {
    /// Refused for the per-source cap.
    pub per_source: u64,
    /// Refused for the total cap.
    pub total: u64,
    /// The last refusal: its source and why.
    pub last: Option<(IpAddr, Refusal)>,
}

impl RefusalTally {
    /// Counts one refusal of a connection from `source`.
    pub fn count(&mut self, source: IpAddr, why: Refusal) {
        match why {
            Refusal::PerSource { .. } => self.per_source += 1,
            Refusal::Total { .. } => self.total += 1,
        }
        self.last = Some((source, why));
    }

    /// What was counted, leaving the tally empty; `None` when nothing was.
    pub fn take(&mut self) -> Option<RefusalTally> {
        (self.per_source + self.total > 0).then(|| std::mem::take(self))
    }

    /// One sentence for the agent's event.
    pub fn describe(&self) -> String {
        let n = self.per_source + self.total;
        match self.last {
            Some((from, why)) => {
                format!("refused {n} host-link connection(s) at once; the last from {from}: {why}")
            }
            None => format!("refused {n} host-link connection(s) at once"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_given_back_when_its_connection_ends() {
        let shared: SharedAdmission = Arc::new(Mutex::new(Admission::new(AdmissionLimits {
            max_connections: 2,
            max_per_source: 1,
        })));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = Slot::take(&shared, a).unwrap();
        assert_eq!(
            Slot::take(&shared, a).unwrap_err(),
            Refusal::PerSource { cap: 1 }
        );
        let _second = Slot::take(&shared, b).unwrap();
        drop(first);
        let _again = Slot::take(&shared, a).unwrap();
        assert_eq!(lock(&shared).held(), 2);
    }

    #[test]
    fn the_tally_reports_once_and_starts_over() {
        let mut t = RefusalTally::default();
        assert_eq!(t.take(), None);
        let from: IpAddr = [198, 18, 32, 12].into();
        t.count(from, Refusal::PerSource { cap: 8 });
        t.count(from, Refusal::Total { cap: 256 });
        let report = t.take().unwrap();
        assert_eq!((report.per_source, report.total), (1, 1));
        let text = report.describe();
        assert!(
            text.contains("refused 2") && text.contains("198.18.32.12"),
            "{text}"
        );
        assert_eq!(t.take(), None);
    }
}
