//! `hvlab bench migrate`: a guest of a guest cluster moved back and forth between two
//! real-tier hosts, once by `hvctl vm migrate` and once by plain `virsh` (`migrate`; for
//! export `dumpxml`, `define`, `undefine`), in the same lab and the same run. For each:
//! the total time (the command's, as an operator waits for it) and, live or offline, the
//! guest's pause as its partner saw it (the longest silence of the moving guest in the
//! partner's status, polled every 20 ms).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{percentiles, Percentiles};
use crate::cluster::{ClusterSpec, LabCluster};
use crate::scenario::Scenario;

/// Result of `hvlab bench migrate`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateBench {
    /// Benchmark name.
    pub bench: String,
    /// `live` or `offline`.
    pub mode: String,
    /// Moves attempted with each tool.
    pub runs: usize,
    /// Moves by `hvctl vm migrate` that ended well, with the application never leaving
    /// Online and the guest never taken for failed.
    pub ok_runs: usize,
    /// `hvctl vm migrate`: total_ms and partner_pause_ms.
    pub hvcluster_ms: Phases,
    /// Plain `virsh migrate` (the same move, no cluster awareness).
    pub virsh_ms: Phases,
    /// Moves by `virsh` that ended well.
    pub virsh_ok_runs: usize,
    /// The guest cluster's dead time in this lab: a pause longer than this makes the
    /// partner take the guest for failed unless told.
    pub guest_dead_after_ms: u64,
    /// Why moves failed, if any did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Figures of one tool.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Phases {
    /// Command start to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Percentiles>,
    /// Longest silence of the moving guest in its partner's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_pause: Option<Percentiles>,
}

/// One move.
struct Moved {
    ok: bool,
    total_ms: f64,
    pause_ms: f64,
    said: String,
}

/// The lab of the benchmark: `migrate-live`'s cluster (g1 on h1 runs app1, g2 on h2),
/// with the guest cluster's dead time raised to 6 s so that plain virsh's offline move
/// (no hold, no forgiven pause) does not end in a failover that would stop the series.
fn spec() -> anyhow::Result<ClusterSpec> {
    let mut spec = Scenario::load("migrate-live")?.cluster;
    spec.suspect_after_ms = 3000;
    spec.dead_after_ms = 6000;
    Ok(spec)
}

/// Runs `runs` round trips of g1 between h1 and h3 in `mode`.
pub fn migrate(mode: &str, runs: usize, progress: bool) -> anyhow::Result<MigrateBench> {
    anyhow::ensure!(
        matches!(mode, "live" | "offline" | "export"),
        "--mode must be live, offline or export"
    );
    let spec = spec()?;
    let cluster = LabCluster::start(&spec)?;
    cluster.wait_all_up(Duration::from_secs(60))?;
    wait_for(
        Duration::from_secs(90),
        "app1 Online on g1 and g1 linked to h1",
        || {
            let app = cluster.guest_status("g2").ok()?.applications;
            let online = app.iter().any(|a| a.online_on.as_deref() == Some("g1"));
            (online && linked_to(&cluster, "h1")).then_some(())
        },
    )?;
    if mode == "export" {
        // Export moves a stopped domain: g1 is powered off first (g2 takes app1 over).
        let mut off = std::process::Command::new(crate::cluster::bin_dir()?.join("hvctl"));
        off.arg("--socket")
            .arg(cluster.socket("h1"))
            .args(["vm", "stop", "g1", "--force"]);
        let (code, said) = cluster.run_on_host("h1", off)?;
        anyhow::ensure!(code == 0, "cannot power g1 off: {said}");
    }
    let mut bench = MigrateBench {
        bench: "migrate".into(),
        mode: mode.into(),
        runs,
        ok_runs: 0,
        hvcluster_ms: Phases::default(),
        virsh_ms: Phases::default(),
        virsh_ok_runs: 0,
        guest_dead_after_ms: spec.dead_after_ms,
        failures: Vec::new(),
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    'runs: for i in 0..runs {
        // There with hvctl, back with plain virsh.
        for (tool, from, to) in [("hvctl", "h1", "h3"), ("virsh", "h3", "h1")] {
            let m = match tool {
                "hvctl" => move_with_hvctl(&cluster, mode, from, to)?,
                _ => move_with_virsh(&cluster, mode, from, to)?,
            };
            if progress {
                eprintln!(
                    "run {}: {tool} {:.0} ms, pause {:.0} ms",
                    i + 1,
                    m.total_ms,
                    m.pause_ms
                );
            }
            if !m.ok {
                bench
                    .failures
                    .push(format!("run {} ({tool}): {}", i + 1, m.said));
                break 'runs;
            }
            if tool == "hvctl" {
                ours.push(m);
                bench.ok_runs += 1;
            } else {
                theirs.push(m);
                bench.virsh_ok_runs += 1;
            }
            let relinked = wait_for(
                Duration::from_secs(30),
                &format!("g1 linked to {to}"),
                || (mode == "export" || linked_to(&cluster, to)).then_some(()),
            );
            if let Err(e) = relinked {
                bench.failures.push(format!("run {}: {e:#}", i + 1));
                break 'runs;
            }
        }
    }
    let figures = |moves: &[Moved]| Phases {
        total: percentiles(&moves.iter().map(|m| m.total_ms).collect::<Vec<_>>()),
        // A stopped domain has no pause.
        partner_pause: (mode != "export")
            .then(|| percentiles(&moves.iter().map(|m| m.pause_ms).collect::<Vec<_>>()))
            .flatten(),
    };
    bench.hvcluster_ms = figures(&ours);
    bench.virsh_ms = figures(&theirs);
    Ok(bench)
}

/// Whether `host` reports g1 linked to it.
fn linked_to(cluster: &LabCluster, host: &str) -> bool {
    cluster
        .status(host)
        .is_ok_and(|s| s.guests.iter().any(|g| g.node == "g1" && g.host == host))
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: not within {} s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn move_with_hvctl(
    cluster: &LabCluster,
    mode: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<Moved> {
    let mut cmd = std::process::Command::new(crate::cluster::bin_dir()?.join("hvctl"));
    cmd.arg("--socket")
        .arg(cluster.socket(from))
        .args(["vm", "migrate", "g1", "--to", to, "--mode", mode]);
    timed_move(cluster, from, cmd, mode != "export")
}

fn move_with_virsh(
    cluster: &LabCluster,
    mode: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<Moved> {
    let (src, dst) = (cluster.libvirt_uri(from), cluster.libvirt_uri(to));
    let run = cluster.dir.display().to_string();
    let xml = cluster.dir.join(from).join("g1-migrate.xml");
    let stream = format!("tcp://{}", cluster.address(to, 0));
    // The host link's channel sockets are per host in the lab (one filesystem).
    let prepare = format!(
        "virsh -q -c '{src}' dumpxml --migratable g1 | sed 's#{run}/{from}/#{run}/{to}/#g' > {x}",
        x = xml.display()
    );
    let script = match mode {
        "export" => format!(
            "virsh -q -c '{src}' dumpxml --inactive --migratable g1 | sed 's#{run}/{from}/#{run}/{to}/#g' > {x} \
             && virsh -q -c '{dst}' define {x} && virsh -q -c '{src}' undefine g1",
            x = xml.display()
        ),
        "live" => format!(
            "{prepare} && virsh -q -c '{src}' migrate --live g1 '{dst}' {stream} --xml {x}",
            x = xml.display()
        ),
        _ => format!(
            "{prepare} && virsh -q -c '{src}' suspend g1 && virsh -q -c '{src}' migrate g1 \
             '{dst}' {stream} --xml {x} && virsh -q -c '{dst}' resume g1",
            x = xml.display()
        ),
    };
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &script]);
    timed_move(cluster, from, cmd, mode != "export")
}

/// Runs `cmd` on `host` while polling g2's view of g1: total time, and g1's longest
/// silence there.
fn timed_move(
    cluster: &LabCluster,
    host: &str,
    cmd: std::process::Command,
    watch_partner: bool,
) -> anyhow::Result<Moved> {
    let mut pause: u64 = 0;
    let mut failed_seen = false;
    let started = Instant::now();
    let (result, total) = std::thread::scope(|scope| {
        let run = scope.spawn(|| cluster.run_on_host(host, cmd));
        while !run.is_finished() && watch_partner {
            if let Ok(s) = cluster.guest_status("g2") {
                if let Some(n) = s.nodes.iter().find(|n| n.name == "g1") {
                    pause = pause.max(n.last_heard_ms.unwrap_or(0));
                    failed_seen |= n.state != hvcluster_common::admin::GuestNodeState::Up;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        while !run.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let total = started.elapsed();
        (run.join(), total)
    });
    let (code, said) = result.unwrap_or_else(|_| Err(anyhow::anyhow!("the move panicked")))?;
    Ok(Moved {
        ok: code == 0 && !failed_seen,
        total_ms: total.as_secs_f64() * 1000.0,
        pause_ms: pause as f64,
        said: format!(
            "exit {code}{}: {}",
            if failed_seen {
                ", g2 took g1 for failed"
            } else {
                ""
            },
            said.trim()
        ),
    })
}
