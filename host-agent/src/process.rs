//! Process preparation: real-time scheduling and locked memory, so heartbeats keep
//! their rhythm when the host is loaded.

use hvcluster_common::config::WatchdogSection;

/// What could be obtained; reported in status and the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prepared {
    /// SCHED_FIFO is in force.
    pub realtime: bool,
    /// mlockall succeeded.
    pub memory_locked: bool,
}

/// Asks for SCHED_FIFO and locked memory as configured; never fails, only reports.
pub fn prepare(cfg: &WatchdogSection) -> Prepared {
    let mut out = Prepared::default();
    if cfg.realtime_priority > 0 {
        let param = libc::sched_param {
            sched_priority: cfg.realtime_priority as libc::c_int,
        };
        // SAFETY: plain syscall wrapper on the calling process with a valid parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc == 0 {
            out.realtime = true;
            tracing::info!(
                priority = cfg.realtime_priority,
                "real-time scheduling (SCHED_FIFO) in force"
            );
        } else {
            tracing::warn!(
                cause = %std::io::Error::last_os_error(),
                "real-time scheduling refused; heartbeats may be late under load \
                 (run as root, or set [load_watchdog] realtime_priority = 0 to silence this)"
            );
        }
    }
    if cfg.lock_memory {
        use nix::sys::mman::{mlockall, MlockAllFlags};
        match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
            Ok(()) => {
                out.memory_locked = true;
                tracing::info!("memory locked");
            }
            Err(e) => tracing::warn!(
                cause = %e,
                "cannot lock memory; paging may delay heartbeats (set [load_watchdog] lock_memory = false to silence this)"
            ),
        }
    }
    out
}
