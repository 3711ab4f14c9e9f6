//! Moving a running (or paused) domain to another host's libvirt.
//!
//! The caller holds connections to both hypervisors (libvirt's managed direct
//! migration): the source's and the destination's URI. QEMU's own stream goes to
//! `stream_uri` (e.g. `tcp://192.0.2.12`, an address on the migration network) when
//! given, else where the destination's libvirt says.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::MigrateParameters;

use crate::{state_of, Libvirt, State};

/// How the domain moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// It keeps running while its memory is copied; it pauses only for the last round.
    Live,
    /// It is paused first and moved while paused, then resumed on the destination
    /// (unless asked to stay paused).
    Offline,
}

/// One migration to carry out.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The domain (name or UUID).
    pub name: String,
    /// The destination's libvirt URI.
    pub dest_uri: String,
    /// Where QEMU sends the domain's memory; None lets libvirt choose.
    pub stream_uri: Option<String>,
    /// Live or offline.
    pub mode: MigrationMode,
    /// Live: the longest pause allowed for the last round, ms (libvirt's default 300).
    pub max_downtime_ms: Option<u64>,
    /// Offline: leave it paused on the destination.
    pub leave_paused: bool,
    /// Text replacements in the domain's XML for the destination (paths that differ
    /// from host to host), as (from, to).
    pub rewrite: Vec<(String, String)>,
    /// Abort the migration when it has not ended by then (the domain stays here).
    pub timeout: Duration,
}

/// Where a migration is, as libvirt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Memory still to copy, bytes.
    pub remaining_bytes: u64,
    /// Memory to copy in all, bytes.
    pub total_bytes: u64,
    /// Copy rate, bytes per second.
    pub rate_bps: u64,
    /// Time since the migration began, ms.
    pub elapsed_ms: u64,
    /// Live: the pause the last round would cause now, as QEMU expects it, ms.
    pub expected_downtime_ms: Option<u64>,
}

/// A migration that ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// How long it took, ms.
    pub took_ms: u64,
    /// The domain's pause, as QEMU measured it (live), ms.
    pub downtime_ms: Option<u64>,
}

impl Libvirt {
    /// Moves `m.name` to `m.dest_uri`. Blocks until it ends; `progress` is called about
    /// every `every` meanwhile. On failure libvirt leaves the domain here, running (an
    /// offline migration resumes it here).
    pub fn migrate(
        &self,
        m: &Migration,
        every: Duration,
        mut progress: impl FnMut(Progress) + Send + 'static,
    ) -> Result<Migrated, String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, &m.name)?;
        let name = &m.name;
        let state = state_of(&domain);
        if !matches!(state, State::Running | State::Paused) {
            return Err(format!(
                "{name} is {state:?} here: only a running or paused domain moves"
            ));
        }
        let dest = Connect::open(Some(&m.dest_uri)).map_err(|e| {
            format!(
                "cannot connect to the destination's libvirt at {}: {e}",
                m.dest_uri
            )
        })?;
        let mut xml = domain
            .xml_desc(virt::sys::VIR_DOMAIN_XML_MIGRATABLE | virt::sys::VIR_DOMAIN_XML_SECURE)
            .map_err(|e| format!("cannot read the XML of {name}: {e}"))?;
        for (from, to) in &m.rewrite {
            xml = xml.replace(from.as_str(), to);
        }
        let paused_here = state == State::Paused;
        if m.mode == MigrationMode::Offline && !paused_here {
            domain
                .suspend()
                .map_err(|e| format!("cannot pause {name} before moving it: {e}"))?;
        }
        let mut flags = virt::sys::VIR_MIGRATE_ABORT_ON_ERROR;
        if m.mode == MigrationMode::Live {
            flags |= virt::sys::VIR_MIGRATE_LIVE;
            if let Some(ms) = m.max_downtime_ms {
                let _ = domain.migrate_set_max_downtime(ms, 0);
            }
        } else {
            flags |= virt::sys::VIR_MIGRATE_PAUSED;
        }
        let persistent = domain.is_persistent().unwrap_or(false);
        if persistent {
            flags |= virt::sys::VIR_MIGRATE_PERSIST_DEST;
        }
        let params = MigrateParameters {
            dest_xml: Some(xml.clone()),
            persist_xml: persistent.then(|| xml.clone()),
            uri: m.stream_uri.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            // A connection of its own: the migration's calls hold the first one.
            let (uri, uuid, done) = (
                self.uri.clone(),
                domain.uuid_string().unwrap_or_default(),
                done.clone(),
            );
            let (timeout, every) = (m.timeout, every);
            std::thread::spawn(move || {
                let conn = Connect::open(Some(&uri)).ok();
                let watched = conn
                    .as_ref()
                    .and_then(|c| c.lookup_domain_by_uuid_string(&uuid).ok());
                let mut last = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let Some(domain) = &watched else { continue };
                    if started.elapsed() > timeout {
                        // SAFETY: the pointer comes from a live `Domain` held by this thread.
                        unsafe { virt::sys::virDomainAbortJob(domain.as_ptr()) };
                        break;
                    }
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let stats = domain
                        .job_stats(0)
                        .ok()
                        .filter(|j| j.r#type != 0)
                        .or_else(|| domain.job_info().ok().filter(|j| j.r#type != 0));
                    if let Some(j) = stats {
                        progress(Progress {
                            remaining_bytes: j.mem_remaining.or(j.data_remaining).unwrap_or(0),
                            total_bytes: j.mem_total.or(j.data_total).unwrap_or(0),
                            rate_bps: j.mem_bps.unwrap_or(0),
                            elapsed_ms: started.elapsed().as_millis() as u64,
                            expected_downtime_ms: j.downtime,
                        });
                    }
                }
            })
        };
        let result = domain.migrate3(&dest, params, flags);
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        let took_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(moved) => {
                if m.mode == MigrationMode::Offline && !m.leave_paused && !paused_here {
                    moved
                        .resume()
                        .map_err(|e| format!("{name} moved but cannot be resumed there: {e}"))?;
                }
                let downtime_ms = domain
                    .job_stats(virt::sys::VIR_DOMAIN_JOB_STATS_COMPLETED)
                    .ok()
                    .and_then(|j| j.downtime);
                Ok(Migrated {
                    took_ms,
                    downtime_ms,
                })
            }
            Err(e) => {
                let timed_out = started.elapsed() > m.timeout;
                if m.mode == MigrationMode::Offline && !paused_here {
                    let _ = domain.resume();
                }
                if timed_out {
                    Err(format!(
                        "the migration of {name} did not end within {} s and was aborted; it \
                         stays here: {e}",
                        m.timeout.as_secs()
                    ))
                } else {
                    Err(format!("cannot move {name}: {e}; it stays here"))
                }
            }
        }
    }
}

impl Libvirt {
    /// Moves the definition of the stopped domain `name` to the hypervisor at
    /// `dest_uri` (its XML with `rewrite` applied): defined there, then undefined here;
    /// started there when `start`. When a step fails, what was done is undone, so the
    /// domain stays defined in exactly one place; the error says which.
    pub fn export(
        &self,
        name: &str,
        dest_uri: &str,
        rewrite: &[(String, String)],
        start: bool,
    ) -> Result<String, String> {
        let conn = self.connect()?;
        let domain = Self::lookup(&conn, name)?;
        let state = state_of(&domain);
        if state.may_run() {
            return Err(format!(
                "{name} is {state:?} here: export moves a stopped domain (stop it first, or \
                 move it live or offline)"
            ));
        }
        if !domain.is_persistent().unwrap_or(false) {
            return Err(format!(
                "{name} is not defined here: there is nothing to export"
            ));
        }
        let mut xml = domain
            .xml_desc(
                virt::sys::VIR_DOMAIN_XML_INACTIVE
                    | virt::sys::VIR_DOMAIN_XML_MIGRATABLE
                    | virt::sys::VIR_DOMAIN_XML_SECURE,
            )
            .map_err(|e| format!("cannot read the XML of {name}: {e}"))?;
        for (from, to) in rewrite {
            xml = xml.replace(from.as_str(), to);
        }
        let dest = Libvirt::new(dest_uri);
        if let Some(there) = dest.info(name)? {
            return Err(format!(
                "{name} is already defined at the destination ({:?} there): resolve that first",
                there.state
            ));
        }
        dest.define(&xml)
            .map_err(|e| format!("cannot define {name} at the destination: {e}; it stays here"))?;
        if let Err(e) = domain.undefine() {
            let undo = dest.undefine(name);
            return Err(format!(
                "cannot undefine {name} here ({e}); {}",
                match undo {
                    Ok(()) => "its new definition was removed again: it stays defined here".into(),
                    Err(u) => format!(
                        "and cannot remove its new definition ({u}): it is defined in both places"
                    ),
                }
            ));
        }
        if start {
            dest.start(name).map_err(|e| {
                format!(
                    "{name} is now defined at the destination only, but does not start there: {e}"
                )
            })?;
            return Ok(format!("{name} is defined and running at the destination"));
        }
        Ok(format!("{name} is defined at the destination (shut off)"))
    }
}
