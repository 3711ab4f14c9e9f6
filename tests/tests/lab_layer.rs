//! The lab's system layer on the real kernel: namespaces, bridges, cgroups, nftables.
//! Needs root; skips (passing) otherwise.

use anyhow::{ensure, Context, Result};
use hvlab::lab::{ping_command, Lab, LabSpec, LoadSpec, NsTarget};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ping(lab: &Lab, from: &str, to: IpAddr) -> Result<bool> {
    let mut child = lab
        .spawn(from, ping_command(to))
        .with_context(|| format!("ping from {from}"))?;
    Ok(child.wait()?.success())
}

fn frozen(cgroup: &Path) -> Result<bool> {
    let events = std::fs::read_to_string(cgroup.join("cgroup.events"))?;
    Ok(events.lines().any(|l| l == "frozen 1"))
}

/// Binds a UDP socket on `addr` inside `ns`, so only traffic inside the lab can reach it.
fn bind_in(lab: &Lab, ns: NsTarget, addr: IpAddr, port: u16) -> Result<UdpSocket> {
    let sock = lab.run_in_netns(ns, || UdpSocket::bind(SocketAddr::new(addr, port)))??;
    sock.set_read_timeout(Some(Duration::from_millis(1500)))?;
    Ok(sock)
}

fn send_from(lab: &Lab, ns: NsTarget, from: IpAddr, to: SocketAddr, data: &[u8]) -> Result<()> {
    lab.run_in_netns(ns, || -> std::io::Result<()> {
        let s = UdpSocket::bind(SocketAddr::new(from, 0))?;
        s.send_to(data, to)?;
        Ok(())
    })??;
    Ok(())
}

#[test]
fn lab_layer_end_to_end() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("lab_layer: skipped, needs root");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut lab = Lab::create(&LabSpec {
        hosts: 3,
        interconnects: 2,
    })?;
    println!("lab created in {:?}", started.elapsed());
    let id = lab.id().to_string();
    let lab_cgroup = lab.cgroup_dir("h1").parent().unwrap().to_path_buf();
    println!(
        "lab {id}: run dir {}, cgroup {}",
        lab.run_dir().display(),
        lab_cgroup.display()
    );
    ensure!(
        lab.run_dir().join("owner.pid").exists(),
        "owner.pid missing"
    );
    ensure!(lab.psi_path("h2").exists(), "no cpu.pressure for h2");
    ensure!(
        lab.read_sysctl(&NsTarget::host("h1"), "ipv6/conf/ic0/disable_ipv6")? == "1",
        "IPv6 still on"
    );

    for ic in 0..2 {
        ensure!(
            ping(&lab, "h1", lab.address("h2", ic))?,
            "h1 cannot ping h2 on ic{ic}"
        );
    }

    lab.cut_link("h2", 1)?;
    println!("h2 ruleset with ic1 cut:\n{}", lab.nft_ruleset("h2")?);
    ensure!(
        !ping(&lab, "h1", lab.address("h2", 1))?,
        "ping over cut ic1 succeeded"
    );
    ensure!(
        ping(&lab, "h1", lab.address("h2", 0))?,
        "ping over ic0 failed while ic1 was cut"
    );
    lab.restore_link("h2", 1)?;
    ensure!(
        ping(&lab, "h1", lab.address("h2", 1))?,
        "ic1 did not come back"
    );

    // One-way cut: h1 -> h2 dropped, h2 -> h1 still delivered.
    lab.one_way_cut("h1", "h2")?;
    let at_h2 = bind_in(&lab, NsTarget::host("h2"), lab.address("h2", 0), 0)?;
    let at_h1 = bind_in(&lab, NsTarget::host("h1"), lab.address("h1", 0), 0)?;
    send_from(
        &lab,
        NsTarget::host("h1"),
        lab.address("h1", 0),
        at_h2.local_addr()?,
        b"x",
    )?;
    send_from(
        &lab,
        NsTarget::host("h2"),
        lab.address("h2", 0),
        at_h1.local_addr()?,
        b"y",
    )?;
    let mut buf = [0u8; 64];
    ensure!(
        at_h2.recv_from(&mut buf).is_err(),
        "h1 -> h2 passed a one-way cut"
    );
    ensure!(
        at_h1.recv_from(&mut buf).is_ok(),
        "h2 -> h1 blocked by a one-way cut of h1 -> h2"
    );
    lab.clear_faults("h2")?;

    // Isolation and loss together: nft must accept the combined table.
    lab.isolate("h2")?;
    lab.loss("h2", 30)?;
    ensure!(
        !ping(&lab, "h1", lab.address("h2", 0))?,
        "ping reached an isolated host"
    );
    lab.heal("h2")?;
    let rules = lab.nft_ruleset("h2")?;
    ensure!(
        rules.contains("numgen random mod 100 < 30") && !rules.contains("isolate"),
        "{rules}"
    );
    lab.loss("h2", 0)?;
    ensure!(
        ping(&lab, "h1", lab.address("h2", 0))?,
        "h2 unreachable after heal"
    );

    // Hang and thaw a process of h3.
    let mut sleeper = lab.spawn("h3", {
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    })?;
    let h3_cg = lab.cgroup_dir("h3");
    ensure!(
        lab.host_pids("h3")? == vec![sleeper.id() as i32],
        "sleep is not in h3's cgroup"
    );
    lab.hang("h3")?;
    ensure!(frozen(&h3_cg)?, "h3 not frozen after hang");
    ensure!(
        lab.spawn("h3", Command::new("true")).is_err(),
        "spawn into a hung host must fail, not block"
    );
    lab.thaw("h3")?;
    ensure!(!frozen(&h3_cg)?, "h3 still frozen after thaw");

    // Power loss kills it; power_loss returns only once the cgroup is empty.
    lab.hang("h3")?;
    lab.power_loss("h3")?;
    ensure!(
        lab.host_pids("h3")?.is_empty(),
        "h3 still has processes after power loss"
    );
    let status = sleeper.wait()?;
    println!("sleep in h3 after power loss: {status}");
    ensure!(!status.success(), "sleep survived power loss");
    ensure!(!frozen(&h3_cg)?, "h3 left frozen after power loss");
    lab.power_on_ready("h3")?;

    // A datagram forged in the rogue namespace reaches a socket of h1.
    let h1_ic0 = lab.address("h1", 0);
    let rx = bind_in(&lab, NsTarget::host("h1"), h1_ic0, 0)?;
    send_from(
        &lab,
        NsTarget::Rogue,
        lab.rogue_address(0),
        rx.local_addr()?,
        b"forged",
    )?;
    let (n, src) = rx
        .recv_from(&mut buf)
        .context("rogue datagram did not arrive")?;
    ensure!(
        &buf[..n] == b"forged" && src.ip() == lab.rogue_address(0),
        "unexpected datagram from {src}"
    );

    // A kdump notice from h2 reaches h1: 8 bytes, magic 0x1B302A40, version 1.
    let kd = bind_in(&lab, NsTarget::host("h1"), h1_ic0, 0)?;
    lab.kdump_notice("h2", &[h1_ic0], kd.local_addr()?.port())?;
    let (n, src) = kd
        .recv_from(&mut buf)
        .context("kdump notice did not arrive")?;
    ensure!(
        n == 8 && src.ip() == lab.address("h2", 0),
        "odd kdump notice: {n} bytes from {src}"
    );
    let magic = u32::from_ne_bytes(buf[..4].try_into()?);
    let version = u32::from_ne_bytes(buf[4..8].try_into()?);
    ensure!(
        magic == 0x1B30_2A40 && version == 1,
        "kdump notice {magic:#x} v{version}"
    );

    // Load lands in the host's cgroup subtree and stops on request.
    lab.start_load_spec(
        "h2",
        &LoadSpec {
            cpu: 1,
            vm: 0,
            io: 0,
            ..LoadSpec::for_seconds(30)
        },
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let load_cg = lab.cgroup_dir("h2").join("load");
    ensure!(
        !std::fs::read_to_string(load_cg.join("cgroup.procs"))?
            .trim()
            .is_empty(),
        "no load running"
    );
    lab.stop_load("h2");
    ensure!(
        std::fs::read_to_string(load_cg.join("cgroup.procs"))?
            .trim()
            .is_empty(),
        "load survived stop"
    );

    let run_dir = lab.run_dir().to_path_buf();
    lab.destroy();
    lab.destroy();
    drop(lab);
    let netns = Command::new("ip").args(["netns", "list"]).output()?;
    let netns = String::from_utf8_lossy(&netns.stdout);
    ensure!(
        !netns.contains(&format!("hvl-{id}-")),
        "namespaces left: {netns}"
    );
    ensure!(!lab_cgroup.exists(), "cgroup {} left", lab_cgroup.display());
    ensure!(!run_dir.exists(), "run dir {} left", run_dir.display());
    Ok(())
}
