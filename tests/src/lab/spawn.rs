//! Starting processes and threads inside a lab namespace (and cgroup).
//!
//! `ip netns exec` is avoided on purpose: it remounts /sys in a private mount namespace,
//! which hides the cgroup tree from the child. Joining only the network namespace with
//! setns keeps every other view of the machine intact.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Opens a named network namespace file for setns.
pub fn open_netns(path: &Path) -> io::Result<File> {
    File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening netns {}: {e}", path.display())))
}

/// Opens a cgroup's `cgroup.procs` for the child to enrol itself.
pub fn open_procs(cgroup: &Path) -> io::Result<File> {
    let p = cgroup.join("cgroup.procs");
    OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", p.display())))
}

/// Spawns `cmd` so that it starts inside `netns` and, if given, the cgroup of `procs`.
///
/// Both files are opened by the caller before the fork because the child may only use
/// async-signal-safe calls between fork and exec: no allocation, no path lookups via std.
pub fn spawn_placed(mut cmd: Command, netns: &File, procs: Option<&File>) -> io::Result<Child> {
    let ns_fd: RawFd = netns.as_raw_fd();
    let procs_fd: Option<RawFd> = procs.map(|f| f.as_raw_fd());
    let hook = move || -> io::Result<()> {
        if let Some(fd) = procs_fd {
            // "0" means the writing process itself; joining the cgroup before setns makes
            // even the exec itself accounted to the simulated host.
            // SAFETY: plain write(2) on an fd the parent keeps open across the fork.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: setns(2) on a namespace fd the parent keeps open across the fork.
        if unsafe { libc::setns(ns_fd, libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only calls write(2) and setns(2), both async-signal-safe, and
    // io::Error::last_os_error does not allocate.
    unsafe {
        cmd.pre_exec(hook);
    }
    // The files stay open until spawn returns; they are O_CLOEXEC so the child's copies
    // vanish at exec.
    cmd.spawn()
}

/// Runs `f` on a fresh thread that first joins the network namespace at `path`.
///
/// Sockets created inside `f` belong to that namespace for their whole life, so `f` may
/// return them to be used from any thread.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = open_netns(path).context("entering namespace for a thread")?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || -> Result<T> {
            // SAFETY: setns(2) on a valid fd; affects only this thread, which ends with `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("setns into {}", path.display()));
            }
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What a finished helper command produced.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status of the command.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs a short helper command inside a namespace (not a host cgroup), feeding `stdin`,
/// and kills it after `timeout`.
///
/// Helpers stay out of host cgroups so that a frozen or killed host cannot block the
/// lab's own fault tooling.
pub fn run_tool(
    netns: &Path,
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<ToolOutput> {
    let what = describe(&cmd);
    let ns = open_netns(netns)?;
    pipe_all(&mut cmd, stdin.is_some());
    let mut child = spawn_placed(cmd, &ns, None)
        .with_context(|| format!("starting `{what}` in {}", netns.display()))?;
    feed(&mut child, stdin)
        .with_context(|| format!("feeding stdin of `{what}` in {}", netns.display()))?;
    // Readers on threads: a chatty command must not block on a full pipe while we wait.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = wait_timeout(&mut child, timeout);
    let stdout = out
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    match status {
        Ok(Some(status)) => Ok(ToolOutput {
            status,
            stdout,
            stderr,
        }),
        Ok(None) => bail!(
            "`{what}` in {} did not finish within {timeout:?}; killed (stderr: {})",
            netns.display(),
            stderr.trim()
        ),
        Err(e) => Err(e).with_context(|| format!("waiting for `{what}` in {}", netns.display())),
    }
}

/// Like [`run_tool`] but fails unless the command exits 0, quoting its stderr.
pub fn run_tool_ok(
    netns: &Path,
    cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<ToolOutput> {
    let what = describe(&cmd);
    let out = run_tool(netns, cmd, stdin, timeout)?;
    if !out.status.success() {
        bail!(
            "`{what}` in {} failed ({}): {}",
            netns.display(),
            out.status,
            out.stderr.trim()
        );
    }
    Ok(out)
}

fn drain(mut r: impl io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` up to `timeout`; on expiry kills and reaps it and returns `None`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` (stdin closed) and returns its exit code and output (stdout, then
/// stderr, each trimmed), or `None` for the code when it did not end within `limit`
/// (it is killed then): a step of a scenario never waits forever on a program.
pub fn output_within(cmd: &mut Command, limit: Duration) -> io::Result<(Option<i32>, String)> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).trim().to_string()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_timeout(&mut child, limit)?;
    let said = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    Ok((status.map(|s| s.code().unwrap_or(-1)), said))
}

/// A command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command in the current (root) namespace and fails with its stderr; used only
/// for `ip netns` bookkeeping, which never sends packets.
pub fn run_root(mut cmd: Command, stdin: Option<&str>) -> Result<String> {
    let what = describe(&cmd);
    pipe_all(&mut cmd, stdin.is_some());
    let mut child = cmd.spawn().with_context(|| format!("starting `{what}`"))?;
    feed(&mut child, stdin).with_context(|| format!("feeding stdin of `{what}`"))?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pipes stdout and stderr, and stdin when there is something to feed (else /dev/null).
fn pipe_all(cmd: &mut Command, with_stdin: bool) {
    cmd.stdin(if with_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
}

/// Writes `stdin` to the child's stdin pipe and closes it.
fn feed(child: &mut Child, stdin: Option<&str>) -> Result<()> {
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        pipe.write_all(text.as_bytes())?;
    }
    Ok(())
}
