//! Simulated BMCs driven by the real fence agents: fence_ipmilan powers a lab host off
//! (its processes die) and on through ipmi_sim, a dead BMC fails fast, fence_dummy covers
//! the always-succeeding and always-failing devices, and nothing outlives the lab.
//! Needs root; skips (passing) otherwise.

use anyhow::{ensure, Context, Result};
use hvlab::lab::{
    fence_dummy_params, FenceRun, Lab, LabSpec, NsTarget, FENCE_DUMMY, FENCE_IPMILAN,
};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous bound on one agent run; the healthy ones take a fraction of a second.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

fn ipmilan(lab: &Lab, from: &str, target: &str, action: &str) -> Result<FenceRun> {
    let run = lab.run_fence_agent(
        from,
        Path::new(FENCE_IPMILAN),
        &lab.fence_ipmilan_params(target, action),
        AGENT_TIMEOUT,
    )?;
    println!(
        "fence_ipmilan action={action} {from} -> {target}: exit {:?} in {:?}: {}",
        run.code,
        run.elapsed,
        run.stdout.trim()
    );
    Ok(run)
}

fn expect(run: &FenceRun, code: i32, stdout: &str, what: &str) -> Result<()> {
    ensure!(
        run.code == Some(code) && run.stdout.contains(stdout),
        "{what}: expected exit {code} and {stdout:?}, got exit {:?}, stdout {:?}, stderr {:?}",
        run.code,
        run.stdout.trim(),
        run.stderr.trim()
    );
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids of every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// Whether a datagram sent from `from` to `to`'s management address arrives.
fn mgmt_datagram_arrives(lab: &Lab, from: &str, to: &str) -> Result<bool> {
    let to_addr = lab.mgmt_address(to);
    let rx = lab.run_in_netns(NsTarget::host(to), || {
        UdpSocket::bind(SocketAddr::new(to_addr, 0))
    })??;
    rx.set_read_timeout(Some(Duration::from_millis(300)))?;
    let dest = rx.local_addr()?;
    let from_addr = lab.mgmt_address(from);
    lab.run_in_netns(NsTarget::host(from), || -> std::io::Result<()> {
        let tx = UdpSocket::bind(SocketAddr::new(from_addr, 0))?;
        for _ in 0..3 {
            tx.send_to(b"mgmt-probe", dest)?;
        }
        Ok(())
    })??;
    let mut buf = [0u8; 32];
    Ok(rx.recv_from(&mut buf).is_ok())
}

#[test]
fn bmcs_power_hosts_off_and_on_through_fence_ipmilan() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("lab_bmc: skipped, needs root");
        return Ok(());
    }
    let started = Instant::now();
    let mut lab = Lab::create(&LabSpec {
        hosts: 3,
        interconnects: 1,
    })?;
    println!("lab {} created in {:?}", lab.id(), started.elapsed());
    let started = Instant::now();
    lab.start_bmcs()?;
    println!(
        "management network and 3 BMCs up in {:?}",
        started.elapsed()
    );
    let id = lab.id().to_string();
    let run_dir = lab.run_dir().to_path_buf();
    let lab_cgroup: PathBuf = lab.cgroup_dir("h1").parent().unwrap().to_path_buf();

    ensure!(lab.bmc_address("h3") == "198.19.254.103".parse::<IpAddr>()?);
    ensure!(lab.mgmt_address("h1") == "198.19.254.1".parse::<IpAddr>()?);
    ensure!(lab.bmc_power_state("h3")?, "h3 must start powered on");
    ensure!(lab.bmc_running("h3"));
    // Host ports of the management bridge are isolated: no host-to-host path around
    // an interconnect partition.
    ensure!(
        !mgmt_datagram_arrives(&lab, "h1", "h2")?,
        "h1 reached h2 over the management network"
    );

    let mut victim = lab
        .spawn("h3", {
            let mut c = Command::new("sleep");
            c.arg("600");
            c
        })
        .context("spawning sleep in h3")?;

    // The stdin form, as the host agent calls it.
    expect(
        &ipmilan(&lab, "h1", "h3", "status")?,
        0,
        "Status: ON",
        "status",
    )?;

    // The command-line form, from h1's namespace.
    let (user, password) = lab.bmc_credentials("h3");
    let mut argv = Command::new(FENCE_IPMILAN);
    argv.arg(format!("--ip={}", lab.bmc_address("h3")))
        .arg(format!("--username={user}"))
        .arg(format!("--password={password}"))
        .args([
            "--lanplus",
            "--cipher=3",
            "--power-wait=0",
            "--action=status",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = lab.spawn("h1", argv)?.wait_with_output()?;
    ensure!(
        out.status.code() == Some(0) && String::from_utf8_lossy(&out.stdout).contains("Status: ON"),
        "command-line form: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let off = ipmilan(&lab, "h1", "h3", "off")?;
    expect(&off, 0, "Success: Powered OFF", "off")?;
    ensure!(
        victim.try_wait()?.is_some(),
        "the sleep in h3 survived a successful fence"
    );
    ensure!(lab.host_pids("h3")?.is_empty(), "h3 still has processes");
    ensure!(!lab.bmc_power_state("h3")?, "h3's BMC still says on");
    expect(
        &ipmilan(&lab, "h1", "h3", "status")?,
        2,
        "Status: OFF",
        "status when off",
    )?;

    let on = ipmilan(&lab, "h1", "h3", "on")?;
    expect(&on, 0, "Success: Powered ON", "on")?;
    ensure!(lab.bmc_power_state("h3")?);
    ensure!(lab.bmc_boot_count("h3")? == 1);
    expect(
        &ipmilan(&lab, "h1", "h3", "status")?,
        0,
        "Status: ON",
        "status when on",
    )?;
    ensure!(lab.bmc_power_state("h2")?, "fencing h3 touched h2's power");

    // A hung (frozen) host is killed too, and comes back thawed.
    let mut hung = lab.spawn("h3", {
        let mut c = Command::new("sleep");
        c.arg("600");
        c
    })?;
    lab.hang("h3")?;
    expect(
        &ipmilan(&lab, "h2", "h3", "reboot")?,
        0,
        "Success: Rebooted",
        "reboot of a hung host",
    )?;
    ensure!(
        hung.try_wait()?.is_some(),
        "the hung sleep survived a reboot"
    );
    ensure!(!lab.is_hung("h3")?, "h3 is still frozen after the reboot");
    ensure!(lab.bmc_power_state("h3")? && lab.bmc_boot_count("h3")? == 2);

    // Fencing goes over the management network, which interconnect faults do not touch.
    lab.isolate("h1")?;
    expect(
        &ipmilan(&lab, "h1", "h3", "status")?,
        0,
        "Status: ON",
        "status from an isolated host",
    )?;
    lab.heal("h1")?;

    // A dead BMC: no answer, and fence_ipmilan gives up after its power_timeout.
    lab.bmc_stop("h3")?;
    ensure!(!lab.bmc_running("h3"));
    let dead = ipmilan(&lab, "h1", "h3", "status")?;
    ensure!(
        dead.code.is_some_and(|c| c != 0 && c != 2),
        "status against a dead BMC: exit {:?} (stderr {:?})",
        dead.code,
        dead.stderr.trim()
    );
    ensure!(
        dead.elapsed < Duration::from_secs(5),
        "a dead BMC took {:?} to fail",
        dead.elapsed
    );
    let dead_off = ipmilan(&lab, "h1", "h3", "off")?;
    ensure!(!dead_off.succeeded() && dead_off.elapsed < Duration::from_secs(5));
    ensure!(
        lab.bmc_power_state("h3")?,
        "a failed fence changed the power state"
    );
    lab.bmc_start("h3")?;
    expect(
        &ipmilan(&lab, "h1", "h3", "status")?,
        0,
        "Status: ON",
        "status after BMC restart",
    )?;

    // fence_dummy: a device that always succeeds and one that always fails.
    let status_file = run_dir.join("dummy.status");
    for action in ["off", "on", "reboot"] {
        let run = lab.run_fence_agent(
            "h1",
            Path::new(FENCE_DUMMY),
            &fence_dummy_params(action, true, &status_file),
            AGENT_TIMEOUT,
        )?;
        println!(
            "fence_dummy ok {action}: exit {:?} in {:?}",
            run.code, run.elapsed
        );
        ensure!(run.succeeded(), "succeeding dummy {action}: {:?}", run);
    }
    for action in ["off", "reboot"] {
        let run = lab.run_fence_agent(
            "h1",
            Path::new(FENCE_DUMMY),
            &fence_dummy_params(action, false, &status_file),
            AGENT_TIMEOUT,
        )?;
        println!(
            "fence_dummy fail {action}: exit {:?} in {:?}",
            run.code, run.elapsed
        );
        ensure!(run.code == Some(1), "failing dummy {action}: {:?}", run);
        ensure!(run.elapsed < Duration::from_secs(5));
    }

    let bmc_pids: Vec<i32> = (1..=3)
        .flat_map(|i| {
            std::fs::read_to_string(lab_cgroup.join(format!("bmc{i}/cgroup.procs")))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    ensure!(
        bmc_pids.len() >= 3,
        "expected 3 ipmi_sim processes, saw {bmc_pids:?}"
    );

    let events = lab.bmc_dir("h3")?.join("events.log");
    println!(
        "{}:\n{}",
        events.display(),
        std::fs::read_to_string(&events).unwrap_or_default()
    );

    let _ = victim.wait();
    let _ = hung.wait();
    drop(lab);

    ensure!(
        bmc_pids.iter().all(|&p| !pid_alive(p)),
        "BMC processes outlived the lab: {bmc_pids:?}"
    );
    let left = processes_mentioning(&run_dir.display().to_string());
    ensure!(left.is_empty(), "processes of lab {id} remain: {left:?}");
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("hvl-{id}-")))
        .collect();
    ensure!(netns.is_empty(), "namespaces of lab {id} remain: {netns:?}");
    ensure!(!lab_cgroup.exists(), "{} remains", lab_cgroup.display());
    ensure!(!run_dir.exists(), "{} remains", run_dir.display());
    Ok(())
}

/// Set in the child that plays a lab owner dying with its BMCs running.
const CRASH_CHILD_ENV: &str = "HVLAB_BMC_TEST_CRASH_CHILD";

/// Not a test of its own: the body of the child process of
/// [`stale_bmcs_are_cleaned_up_after_the_owner_dies`].
#[test]
fn crash_child() -> Result<()> {
    if std::env::var_os(CRASH_CHILD_ENV).is_none() {
        return Ok(());
    }
    let mut lab = Lab::create(&LabSpec {
        hosts: 2,
        interconnects: 1,
    })?;
    lab.start_bmcs()?;
    println!("LAB {}", lab.id());
    use std::io::Write;
    std::io::stdout().flush()?;
    // Wait to be killed: the lab must be found and removed by someone else.
    std::thread::sleep(Duration::from_secs(120));
    Ok(())
}

#[test]
fn stale_bmcs_are_cleaned_up_after_the_owner_dies() -> Result<()> {
    if !nix::unistd::geteuid().is_root() || std::env::var_os(CRASH_CHILD_ENV).is_some() {
        return Ok(());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().unwrap();
    let mut id = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        // libtest prints `test crash_child ... ` on the same line first.
        let line = line?;
        if let Some(at) = line.find("LAB ") {
            id = Some(line[at + 4..].trim().to_string());
            break;
        }
    }
    let id = match id {
        Some(id) => id,
        None => {
            let status = child.wait()?;
            anyhow::bail!("the crash child never reported a lab ({status})");
        }
    };
    let run_dir = PathBuf::from("/run/hvlab").join(&id);
    let sims = processes_mentioning(&run_dir.display().to_string());
    ensure!(
        sims.len() >= 2,
        "expected the child's 2 ipmi_sim, saw {sims:?}"
    );
    child.kill()?;
    child.wait()?;
    ensure!(
        !processes_mentioning(&run_dir.display().to_string()).is_empty(),
        "the BMCs died with their owner; nothing left to clean up"
    );

    let removed = hvlab::lab::cleanup_stale()?;
    println!("cleanup_stale removed {removed} lab(s), including {id}");
    let left = processes_mentioning(&run_dir.display().to_string());
    ensure!(
        left.is_empty(),
        "BMC processes of lab {id} survived cleanup: {left:?}"
    );
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("hvl-{id}-")))
        .collect();
    ensure!(
        netns.is_empty(),
        "namespaces of lab {id} survived cleanup: {netns:?}"
    );
    ensure!(!run_dir.exists(), "{} survived cleanup", run_dir.display());
    Ok(())
}
