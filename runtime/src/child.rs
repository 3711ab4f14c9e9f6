//! Bounded child processes: a program run in its own process group, its stdin fed,
//! both output streams kept (the last [`TAIL_BYTES`] of each) and the whole group
//! killed when it runs past its deadline or the run is abandoned. Fence agents and
//! resource scripts both leave helpers behind (ipmitool, ssh, sleep), so a timeout that
//! killed only the leader would leave work going on unobserved.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::time::Instant;

/// How much of each output stream is kept.
pub const TAIL_BYTES: usize = 4096;

/// What one bounded run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRun {
    /// Exit code; `None` if it was killed by a signal or timed out.
    pub exit: Option<i32>,
    /// Last [`TAIL_BYTES`] (or the bytes asked for) of its stdout.
    pub stdout_tail: String,
    /// Last [`TAIL_BYTES`] of its stderr, with a note when it was killed by a signal
    /// or left helpers running that had to be killed.
    pub stderr_tail: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// It ran past its timeout and its process group was killed.
    pub timed_out: bool,
    /// Its stdout was longer than what was kept: `stdout_tail` is not all of it.
    pub stdout_cut: bool,
}

/// Keeps the last `.1` bytes of a stream; `.2` once bytes were dropped.
#[derive(Debug)]
struct Tail(Vec<u8>, usize, bool);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > self.1 {
            let cut = self.0.len() - self.1;
            self.0.drain(..cut);
            self.2 = true;
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Reads a stream to its end into `tail`; a read error ends it like EOF.
async fn drain<R: AsyncRead + Unpin>(stream: Option<R>, tail: &mut Tail) {
    let Some(mut stream) = stream else { return };
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
}

/// Writes `text` and closes stdin. A program that exits without reading it makes this
/// fail with EPIPE; its exit code tells what happened, so that is ignored.
async fn feed(stdin: Option<ChildStdin>, text: &str) {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(text.as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
}

/// Kills the process group if the run is abandoned (its future dropped) while the group
/// leader is not yet reaped, so nothing keeps going unobserved.
#[derive(Debug)]
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` in a new process group with `stdin_text` on its stdin (empty stdin
/// when `None`), bounded by `timeout`. Fails only when the program cannot be started;
/// the error is the operating system's reason.
pub async fn run_bounded(
    command: Command,
    stdin_text: Option<&str>,
    timeout: Duration,
) -> std::io::Result<ChildRun> {
    run_bounded_keeping(command, stdin_text, timeout, TAIL_BYTES).await
}

/// [`run_bounded`], keeping the last `keep` bytes of each stream instead of
/// [`TAIL_BYTES`] (for programs whose whole output is wanted, like meta-data).
pub async fn run_bounded_keeping(
    command: Command,
    stdin_text: Option<&str>,
    timeout: Duration,
    keep: usize,
) -> std::io::Result<ChildRun> {
    run(command, stdin_text, timeout, keep, false).await
}

/// How long output is still read after the leader exited, when its helpers are left
/// running.
pub const HELPER_GRACE: Duration = Duration::from_millis(200);

/// [`run_bounded`] for programs that may start daemons (resource start scripts): once
/// the leader exits, what its helpers still write is read for [`HELPER_GRACE`] at most,
/// and the helpers are left running. Only a leader past its timeout has its whole group
/// killed.
pub async fn run_leaving_helpers(command: Command, timeout: Duration) -> std::io::Result<ChildRun> {
    run(command, None, timeout, TAIL_BYTES, true).await
}

async fn run(
    mut command: Command,
    stdin_text: Option<&str>,
    timeout: Duration,
    keep: usize,
    leave_helpers: bool,
) -> std::io::Result<ChildRun> {
    let start = Instant::now();
    let mut child = command
        .stdin(if stdin_text.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    // Declared after `child` so it drops first: the group is killed while the leader
    // is unreaped, when its id cannot belong to anyone else.
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Tail(Vec::new(), keep, false), Tail(Vec::new(), keep, false));
    let text = stdin_text.unwrap_or("");
    // Both pipes are read concurrently with the wait, so a chatty program never blocks.
    let finished = tokio::time::timeout_at(start + timeout, async {
        let io = async {
            tokio::join!(
                feed(stdin, text),
                drain(stdout, &mut out),
                drain(stderr, &mut err)
            )
        };
        let mut io = std::pin::pin!(io);
        let mut io_done = false;
        let status = loop {
            tokio::select! {
                _ = &mut io, if !io_done => io_done = true,
                status = child.wait() => break status,
            }
        };
        if !io_done {
            if leave_helpers {
                let _ = tokio::time::timeout(HELPER_GRACE, &mut io).await;
            } else {
                io.await;
            }
        }
        status
    })
    .await;
    let (status, timed_out, note): (Option<ExitStatus>, bool, &str) = match finished {
        Ok(Ok(status)) => (Some(status), false, ""),
        Ok(Err(e)) => {
            tracing::warn!(cause = %e, "cannot wait for a child process");
            guard.kill();
            (child.wait().await.ok(), false, "")
        }
        Err(_) => match child.try_wait() {
            // It exited but something still holds its pipes open: a helper left in its
            // group (which keeps the group id taken), so killing the group is safe.
            Ok(Some(status)) if leave_helpers => (Some(status), false, ""),
            Ok(Some(status)) => {
                guard.kill();
                (
                    Some(status),
                    false,
                    "\n[helpers it left running were killed]",
                )
            }
            _ => {
                guard.kill();
                (child.wait().await.ok(), true, "")
            }
        },
    };
    guard.0 = None;
    let exit = if timed_out {
        None
    } else {
        status.and_then(|s| s.code())
    };
    let mut stderr_tail = err.text();
    stderr_tail.push_str(note);
    if let Some(sig) = status.and_then(|s| s.signal()).filter(|_| !timed_out) {
        stderr_tail.push_str(&format!("\n[killed by signal {sig}]"));
    }
    Ok(ChildRun {
        exit,
        stdout_tail: out.text(),
        stderr_tail,
        elapsed: start.elapsed(),
        timed_out,
        stdout_cut: out.2,
    })
}

/// The last non-empty line of a program's output.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}
