//! What makes an agent a daemon, shared by hv-hostd and hv-guestd: the command-line
//! options both take, logging, the name it runs as, the runtime, the wait for SIGTERM
//! and the exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;

/// Paths given on the command line that override the configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PathOverrides {
    /// Admin socket path (overrides `[admin] socket`).
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,
    /// State directory (overrides `[cluster] state_dir`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

impl PathOverrides {
    /// Replaces the configured admin socket and state directory by those given.
    pub fn apply(&self, admin_socket: &mut PathBuf, state_dir: &mut PathBuf) {
        if let Some(p) = &self.admin_socket {
            *admin_socket = p.clone();
        }
        if let Some(p) = &self.state_dir {
            *state_dir = p.clone();
        }
    }
}

/// Keeps the log writers until exit: dropping it flushes what is buffered.
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Vec<WorkerGuard>);

/// Installs logging filtered by `HV_LOG` (default `info`). Under systemd (standard
/// error is the journal's stream, `JOURNAL_STREAM`), events go to the journal natively,
/// with their priority (error 3, warning 4, info 5, debug 6, trace 7) and their fields
/// (`cause` as `HV_CAUSE`).
/// Elsewhere, to standard error as text (coloured on a terminal) or as JSON lines; a
/// `lossy` writer drops info and debug lines rather than block the agent when standard
/// error is slow, while warnings and errors go through a writer that never drops them.
pub fn install_logging(json: bool, lossy: bool) -> LogGuard {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("HV_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(journal.with_field_prefix(Some("HV".into())))
                    .init();
                return LogGuard(Vec::new());
            }
            Err(e) => {
                eprintln!("cannot open the journal's socket ({e}); logging to standard error")
            }
        }
    }
    let (chatter, chatter_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(lossy)
        .finish(std::io::stderr());
    let (alarms, alarms_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let writer = chatter
        .with_min_level(tracing::Level::INFO)
        .and(alarms.with_max_level(tracing::Level::WARN));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    LogGuard(vec![chatter_guard, alarms_guard])
}

/// Whether standard error is the stream systemd connected to the journal: the device
/// and inode in `JOURNAL_STREAM` are those of standard error (a child that inherited
/// the variable with another standard error is not).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// The member name this agent runs as: `given`, else the system host name. Without
/// either, says so on standard error and returns exit status 2; `program` is the
/// binary, `member` what the configuration calls a member (`host`, `node`), whose
/// option is `--MEMBER`.
pub fn member_name(given: Option<String>, program: &str, member: &str) -> Result<String, ExitCode> {
    given.or_else(system_hostname).ok_or_else(|| {
        eprintln!("{program}: cannot tell which {member} this is: pass --{member} NAME");
        ExitCode::from(2)
    })
}

fn system_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

/// Fails unless `name` is among the `configured` names of `section` (`[[host]]`,
/// `[[node]]`) of the file `config`; the error names the file and lists the names.
pub fn require_member<'a>(
    config: &Path,
    section: &str,
    name: &str,
    configured: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    let configured: Vec<&str> = configured.into_iter().collect();
    if configured.contains(&name) {
        return Ok(());
    }
    anyhow::bail!(
        "{}: there is no {section} named {name:?} (configured: {})",
        config.display(),
        configured.join(", ")
    )
}

/// The agent's runtime: two worker threads named `thread_name`, timers and I/O; each
/// of its threads takes the agent's real-time scheduling when it is in force.
pub fn runtime(thread_name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(thread_name)
        .on_thread_start(crate::process::enter_agent_thread)
        .build()
        .context("cannot start the async runtime")
}

/// Completes at the first SIGTERM or SIGINT, and tells systemd the agent stops.
///
/// The handlers are installed when this is called, not when the future is first polled:
/// call it first thing inside the runtime, so that a SIGTERM that arrives while the
/// agent starts is kept for its loop (a clean stop) instead of killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        crate::service::stopping(&format!("{signal} received, stopping what runs here"));
    }
}

/// The exit status for what `run` returned: success, or 1 with the error and its
/// causes on standard error after `program: `.
pub fn exit_status(program: &str, outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// File descriptors an agent needs for itself besides its host-link connections
/// (sockets, state files, children's pipes, libvirt).
pub const FD_RESERVE: u64 = 256;

/// Highest soft open-file limit asked for when the hard one is unlimited (the kernel's
/// default `nr_open`).
const FD_CEILING: u64 = 1 << 20;

/// The open-file limit (RLIMIT_NOFILE) before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit in force now.
    pub now: u64,
    /// Hard limit.
    pub hard: u64,
}

fn fd_limits() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall wrapper writing into a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raises the soft open-file limit to the hard one (at most 2^20), so that connections
/// held by peers do not leave the agent without descriptors for its own work (the
/// default soft limit is often 1024). Never fails: says what it could do in the log.
pub fn raise_fd_limit() -> Option<FdLimit> {
    let (before, hard) = match fd_limits() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(cause = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let target = hard.min(FD_CEILING);
    if target > before {
        let r = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: plain syscall wrapper with a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            tracing::warn!(
                cause = %std::io::Error::last_os_error(), soft = before, hard,
                "cannot raise the open-file limit; raise LimitNOFILE of the service"
            );
        }
    }
    let now = fd_limits().map(|l| l.0).unwrap_or(before);
    tracing::info!(before, now, hard, "open-file limit");
    Some(FdLimit { before, now, hard })
}

/// Warns when the open-file limit cannot hold `connections` peers' connections plus
/// [`FD_RESERVE`] descriptors of the agent's own.
pub fn check_fd_limit(connections: u64) {
    if let Ok((soft, _)) = fd_limits() {
        if soft < connections + FD_RESERVE {
            tracing::warn!(
                limit = soft,
                "the open-file limit ({soft}) is below [host_link] max_connections ({connections}) \
                 + {FD_RESERVE}: raise LimitNOFILE of the service or lower max_connections"
            );
        }
    }
}

#[cfg(test)]
mod fd_tests {
    /// The soft limit ends at the hard one (or the ceiling), and raising again changes
    /// nothing.
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = super::fd_limits().unwrap();
        let lowered = libc::rlimit {
            rlim_cur: soft.min(512) as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: plain syscall wrapper with a valid rlimit (lowering is always allowed).
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let got = super::raise_fd_limit().unwrap();
        assert_eq!(got.before, soft.min(512));
        assert_eq!(got.now, hard.min(super::FD_CEILING));
        assert_eq!(super::raise_fd_limit().unwrap().now, got.now);
    }
}
