//! Claiming lab ids and removing labs, including those of processes that died.
//!
//! Invariant that makes this safe without locks: a lab's run directory is created before
//! anything else of the lab and removed after everything else. So a namespace or cgroup
//! whose id has no run directory is an orphan, and a run directory whose owner is dead
//! belongs to nobody.

use super::{cgroup, names, netns};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

/// A run directory without an owner file younger than this may still be being created.
const CLAIM_GRACE: Duration = Duration::from_secs(60);

/// Claims a fresh id by creating its run directory exclusively and recording the owner.
pub fn claim_id() -> Result<String> {
    fs::create_dir_all(names::RUN_ROOT).with_context(|| format!("creating {}", names::RUN_ROOT))?;
    for _ in 0..256 {
        let id = names::candidate_id();
        let dir = names::run_dir(&id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
        // Leftovers under this id can only be orphans (see the module comment).
        remove_leftovers(&id).with_context(|| format!("removing orphans of lab id {id}"))?;
        let pid = std::process::id();
        fs::write(dir.join("owner.pid"), format!("{pid}\n"))
            .with_context(|| format!("writing {}", dir.join("owner.pid").display()))?;
        if let Some(start) = start_time(pid) {
            // Guards against pid reuse: a live pid with another start time is not the owner.
            fs::write(dir.join("owner.start"), format!("{start}\n"))
                .with_context(|| format!("writing {}", dir.join("owner.start").display()))?;
        }
        return Ok(id);
    }
    bail!("no free lab id found under {}", names::RUN_ROOT)
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that created the lab in `run_dir` is still alive.
fn owner_alive(run_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(run_dir.join("owner.pid")) else {
        // Being claimed right now, or a crash between mkdir and the write.
        let age = fs::metadata(run_dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        return age.is_none_or(|a| a < CLAIM_GRACE);
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return false;
    };
    let Some(now) = start_time(pid) else {
        return false;
    };
    match fs::read_to_string(run_dir.join("owner.start"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(recorded) => recorded == now,
        None => true,
    }
}

/// Every lab id that has a run directory, namespace or cgroup on this machine.
fn all_ids() -> BTreeSet<String> {
    let mut ids = run_dir_ids();
    for ns in netns::list() {
        if let Some(id) = names::id_of_netns(&ns) {
            ids.insert(id.to_string());
        }
    }
    if let Ok(root) = cgroup::root() {
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                if let Some(id) = e.file_name().to_str().and_then(names::id_of_cgroup) {
                    ids.insert(id.to_string());
                }
            }
        }
    }
    ids
}

fn run_dir_ids() -> BTreeSet<String> {
    fs::read_dir(names::RUN_ROOT)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| names::is_id(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a lab's cgroups and namespaces but keeps its run directory.
fn remove_leftovers(id: &str) -> Result<()> {
    let mut first_err: Option<anyhow::Error> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!("lab {id}: {e:#}");
            first_err.get_or_insert(e);
        }
    };
    // Processes first: they may hold namespaces and would keep sending otherwise.
    match cgroup::root() {
        Ok(root) => note(cgroup::remove_tree(&root.join(names::cgroup_dir(id)))),
        Err(e) => note(Err(e)),
    }
    for ns in netns::list() {
        if names::id_of_netns(&ns) == Some(id) {
            note(netns::delete(&ns));
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Removes everything of lab `id`; the run directory goes last and only if all else went.
pub fn remove_lab(id: &str) -> Result<()> {
    remove_leftovers(id)?;
    let dir = names::run_dir(id);
    if dir.exists() {
        // A scenario that broke a state file on purpose (the immutable attribute makes
        // writes fail even for root) may have stopped before it mended it.
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Removes every lab whose owner process is dead, and orphaned namespaces and cgroups;
/// returns how many labs were removed.
pub fn cleanup_stale() -> Result<usize> {
    let with_run_dir = run_dir_ids();
    remove_labs(
        all_ids()
            .into_iter()
            .filter(|id| !with_run_dir.contains(id) || !owner_alive(&names::run_dir(id))),
    )
}

/// Removes every lab created by process `pid` (e.g. this one, on Ctrl-C); returns how many.
pub fn cleanup_owned_by(pid: u32) -> Result<usize> {
    remove_labs(run_dir_ids().into_iter().filter(|id| {
        let owner = fs::read_to_string(names::run_dir(id).join("owner.pid")).ok();
        owner.and_then(|t| t.trim().parse::<u32>().ok()) == Some(pid)
    }))
}

/// Removes every lab on the machine, live or not; returns how many were removed.
pub fn cleanup_all() -> Result<usize> {
    remove_labs(all_ids().into_iter())
}

/// Removes each lab in `ids`, going on past failures; reports the first failure.
fn remove_labs(ids: impl Iterator<Item = String>) -> Result<usize> {
    let mut removed = 0;
    let mut first_err = None;
    for id in ids {
        match remove_lab(&id) {
            Ok(()) => removed += 1,
            Err(e) => {
                first_err.get_or_insert(e.context(format!("removing lab {id}")));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
    }
}
