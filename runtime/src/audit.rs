//! The audit log: every operator command an agent receives on its admin socket or
//! port, with the caller's uid and pid, appended as one JSON line
//! ([`AuditRecord`]) and synced before the command is carried out. The file is opened
//! for each record (append-only, mode 0600), so it can be rotated by renaming it: the
//! next record starts a new file. Writing happens on the blocking pool, never on the
//! driver loop that sends heartbeats.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hvcluster_common::admin::audit::{is_audited, AuditRecord};
use hvcluster_common::admin::Request;

/// File name of the audit log in the state directory.
pub const AUDIT_LOG: &str = "audit.log";

/// Least time between two warnings about a failing audit log.
const WARN_EVERY_MS: u64 = 60_000;

/// Who is at the other end of an admin connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `socket` or `port`.
    pub via: &'static str,
    /// The caller's user id, when the transport tells.
    pub uid: Option<u32>,
    /// The caller's process id, when the transport tells.
    pub pid: Option<i32>,
    /// The caller may read (status, events, fencing history) but not act: a member of
    /// the readers group ([`crate::admin::READERS_GROUP`]), not root.
    pub read_only: bool,
}

/// Where an agent's operator commands are recorded.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: Arc<PathBuf>,
    agent: Arc<str>,
    last_warned_ms: Arc<AtomicU64>,
}

impl AuditLog {
    /// The audit log at `path` of the agent named `agent`.
    pub fn new(path: PathBuf, agent: &str) -> AuditLog {
        AuditLog {
            path: Arc::new(path),
            agent: agent.into(),
            last_warned_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records `request` from `peer` when it is an operator command, and returns once
    /// the record is on disk (or could not be written: that is logged, at most once a
    /// minute, and the command still goes ahead, so an operator can always act).
    pub async fn record(&self, peer: Peer, request: &Request) {
        if !is_audited(request) {
            return;
        }
        let now_ms = unix_ms();
        let record = AuditRecord {
            unix_ms: now_ms,
            agent: self.agent.to_string(),
            via: peer.via.to_string(),
            uid: peer.uid,
            pid: peer.pid,
            request: request.clone(),
        };
        let path = self.path.clone();
        let line = record.to_line();
        let written = tokio::task::spawn_blocking(move || append(&path, line.as_bytes()))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = written {
            let last = self.last_warned_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= WARN_EVERY_MS {
                self.last_warned_ms.store(now_ms, Ordering::Relaxed);
                tracing::error!(
                    file = %self.path.display(),
                    cause = %e,
                    "cannot write the audit log; operator commands go unrecorded \
                     (check the state directory's disk and permissions)"
                );
            }
        }
    }
}

/// Appends `line` to `path` and syncs it; a newly created file has its directory
/// synced too, so the record survives a crash.
pub fn append(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()?;
    if created {
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
