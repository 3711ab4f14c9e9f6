//! Process preparation: real-time scheduling and locked memory, so heartbeats keep
//! their rhythm when the host is loaded.
//!
//! The agent's threads run SCHED_FIFO with SCHED_RESET_ON_FORK: a process they start
//! (a fence agent, a resource script, the daemons those leave behind) begins at normal
//! priority instead of inheriting a real-time class it never asked for. The kernel
//! resets threads too, so each thread the agent starts takes the class again with
//! [`enter_agent_thread`].

use std::sync::atomic::{AtomicI32, Ordering};

use hvcluster_common::config::WatchdogSection;

/// The scheduling policy of the agent's threads.
pub const REALTIME_POLICY: libc::c_int = libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK;

/// The real-time priority the agent's threads take (0: real-time scheduling is off).
static REALTIME_PRIORITY: AtomicI32 = AtomicI32::new(0);

/// Gives the calling thread [`REALTIME_POLICY`] at `priority`.
fn set_realtime(priority: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall wrapper on the calling thread with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, REALTIME_POLICY, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Gives the calling thread the agent's real-time scheduling when it is in force. Every
/// thread the agent starts calls it first: a thread begins at normal priority, reset
/// like any child of a thread with SCHED_RESET_ON_FORK.
pub fn enter_agent_thread() {
    let priority = REALTIME_PRIORITY.load(Ordering::Relaxed);
    if priority > 0 {
        if let Err(e) = set_realtime(priority) {
            tracing::warn!(cause = %e, "a thread of the agent could not take real-time scheduling");
        }
    }
}

/// Drops the real-time priority the calling thread inherited: waiting on a disk is no
/// reason to hold a CPU ahead of everything else on the machine.
pub fn ordinary_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall wrapper on the calling thread with a valid parameter.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

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
        let priority = cfg.realtime_priority as libc::c_int;
        if let Err(e) = set_realtime(priority) {
            tracing::warn!(
                cause = %e,
                "real-time scheduling refused; heartbeats may be late under load \
                 (run as root, or set [load_watchdog] realtime_priority = 0 to silence this)"
            );
        } else {
            REALTIME_PRIORITY.store(priority, Ordering::Relaxed);
            out.realtime = true;
            tracing::info!(
                priority = cfg.realtime_priority,
                "real-time scheduling (SCHED_FIFO, reset on fork) in force"
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

#[cfg(test)]
mod tests;
