//! cgroup v2 groups of simulated hosts: create, freeze, kill, remove.
//!
//! Only the cgroup2 hierarchy is used, because `cgroup.kill`, `cgroup.freeze` and the
//! per-group `cpu.pressure` exist only there; on hybrid machines it sits beside the v1
//! controllers (e.g. at `/sys/fs/cgroup/unified`).

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for a cgroup to freeze, thaw or empty before giving up.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

/// The mount point of the cgroup2 hierarchy.
pub fn root() -> Result<PathBuf> {
    if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
        if let Some(p) = cgroup2_mount(&mounts) {
            return Ok(p);
        }
    }
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let p = PathBuf::from(candidate);
        if p.join("cgroup.controllers").exists() {
            return Ok(p);
        }
    }
    bail!("no cgroup2 hierarchy found (checked /proc/self/mounts, /sys/fs/cgroup, /sys/fs/cgroup/unified)")
}

/// The first cgroup2 mount point in a `/proc/self/mounts` text.
fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// Undoes the octal escapes the kernel uses for spaces and the like in mount paths.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates a cgroup directory (parents included).
pub fn create(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating cgroup {}", dir.display()))
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))
}

/// Reads one `key value` field of `cgroup.events`.
fn event(dir: &Path, key: &str) -> Result<Option<String>> {
    let p = dir.join("cgroup.events");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(parse_event(&text, key))
}

fn parse_event(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Whether the cgroup is currently frozen according to `cgroup.events`.
pub fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(event(dir, "frozen")?.as_deref() == Some("1"))
}

fn wait_for(dir: &Path, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "cgroup {} did not become {what} within {SETTLE_TIMEOUT:?}",
                dir.display()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Freezes every process of the cgroup and waits until the kernel reports it frozen.
pub fn freeze(dir: &Path) -> Result<()> {
    write_file(dir, "cgroup.freeze", "1")?;
    wait_for(dir, "frozen", || is_frozen(dir))
}

/// Thaws the cgroup and waits until the kernel reports it running.
pub fn thaw(dir: &Path) -> Result<()> {
    write_file(dir, "cgroup.freeze", "0")?;
    wait_for(dir, "thawed", || Ok(!is_frozen(dir)?))
}

/// Pids currently in the cgroup itself (not its children).
pub fn pids(dir: &Path) -> Result<Vec<i32>> {
    let p = dir.join("cgroup.procs");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// SIGKILLs everything in the cgroup and its children, then waits until it is empty.
pub fn kill(dir: &Path) -> Result<()> {
    write_file(dir, "cgroup.kill", "1")?;
    // `populated` covers descendants too, so one wait suffices for the subtree.
    wait_for(dir, "empty", || {
        Ok(event(dir, "populated")?.as_deref() == Some("0"))
    })
}

/// Thaws, kills and removes a cgroup subtree; missing directories are not an error.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    // A frozen group would still die on SIGKILL, but thawing first keeps `frozen`
    // bookkeeping from delaying the emptiness we wait for.
    let _ = write_file(dir, "cgroup.freeze", "0");
    kill(dir)?;
    remove_empty_tree(dir)
}

fn remove_empty_tree(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("listing cgroup {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("listing cgroup {}", dir.display()))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_empty_tree(&e.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mount_on_hybrid_and_pure_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0\n"), None);
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
    }

    #[test]
    fn parses_cgroup_events() {
        let text = "populated 1\nfrozen 0\n";
        assert_eq!(parse_event(text, "frozen").as_deref(), Some("0"));
        assert_eq!(parse_event(text, "populated").as_deref(), Some("1"));
        assert_eq!(parse_event(text, "other"), None);
    }
}
