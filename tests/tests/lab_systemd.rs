//! lab-systemd: hv-hostd under a real systemd. The test boots systemd as PID 1 of a
//! container (systemd-nspawn: a private network with loopback only, a throw-away root
//! over this machine's read-only /usr), with the shipped unit
//! `packaging/systemd/hvcluster-host.hv-hostd.service` and a drop-in that only points
//! ExecStart at the freshly built binary, names the host, makes the CPU-pressure file
//! unreadable (so the agent logs a warning) and shortens WatchdogSec to 3 s. Then, from
//! inside the container (`nsenter` into its mount and PID namespaces), it checks:
//!
//! - readiness: the unit is `active` only once the agent said READY=1, and systemd
//!   shows the agent's status line (which names the host it has not heard);
//! - the watchdog: a frozen agent (SIGSTOP) is killed for a watchdog timeout and started
//!   again by systemd (`Restart=on-failure`);
//! - the journal: the agent's entries carry their priorities (warning 4, info 5) and its
//!   fields (`HV_SOURCE`);
//! - a clean stop: `systemctl stop` ends with result `success`;
//! - the guest unit (`hvcluster-guest.hv-guestd.service`, hv-guestd beside it): ready with
//!   its status line, and a clean stop.
//!
//! Needs root and systemd-nspawn (Debian's systemd-container, installed by
//! scripts/install-deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The booted container; halted (and its leftovers removed) when dropped.
struct Container {
    nspawn: Child,
    machine: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes systemd-nspawn halt the container cleanly.
        let pid = nix::unistd::Pid::from_raw(self.nspawn.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        // Left by systemd-nspawn when it is not registered with a host systemd.
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.machine));
    }
}

impl Container {
    /// The container's PID 1, as seen from here.
    fn leader(&self) -> Option<u32> {
        let children = format!("/proc/{0}/task/{0}/children", self.nspawn.id());
        let text = std::fs::read_to_string(children).ok()?;
        let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "systemd").then_some(pid)
    }

    /// Runs `args` inside the container.
    fn run(&self, args: &[&str]) -> Output {
        let leader = self.leader().expect("the container's systemd").to_string();
        Command::new("nsenter")
            .args(["-t", &leader, "-m", "-p", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// One property of a unit, as `systemctl show` gives it.
    fn property(&self, unit: &str, name: &str) -> String {
        let out = self.run(&["systemctl", "show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until `ok` holds, at most `limit`; fails with `what` and the unit's state.
    fn wait(&self, what: &str, limit: Duration, ok: impl Fn(&Container) -> bool) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.leader().is_some() && ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let status = self.run(&["systemctl", "status", "--no-pager", "hv-hostd"]);
        panic!(
            "lab-systemd: {what} not seen within {limit:?}\n{}",
            String::from_utf8_lossy(&status.stdout)
        );
    }

    /// The journal entries of the unit (systemd's and the agent's), as JSON objects.
    fn journal(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["journalctl", "-u", "hv-hostd", "-o", "json", "--no-pager"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn boot(dir: &Path, bin: &Path) -> Container {
    use std::os::unix::fs::PermissionsExt;
    let etc = dir.join("etc-hvcluster");
    let units = dir.join("units");
    let dropin = units.join("hv-hostd.service.d");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&dropin).unwrap();
    write(&etc.join("cluster.key"), "0123456789abcdef0123456789abcdef");
    std::fs::set_permissions(
        etc.join("cluster.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // h2 never starts: h1 waits for it, then finds it failed.
    write(
        &etc.join("cluster.toml"),
        "[cluster]\nname = \"lab-systemd\"\nkey_file = \"cluster.key\"\n\n\
         [[interconnect]]\nname = \"ic0\"\n\n\
         [[host]]\nname = \"h1\"\nnode_id = 1\naddresses = { ic0 = \"127.0.0.1\" }\n\n\
         [[host]]\nname = \"h2\"\nnode_id = 2\naddresses = { ic0 = \"127.0.0.2\" }\n\n\
         [kdump]\nenabled = false\n",
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd/hvcluster-host.hv-hostd.service");
    std::fs::copy(&shipped, units.join("hv-hostd.service")).unwrap();
    write(
        &dropin.join("lab.conf"),
        "[Service]\nExecStart=\nExecStart=/opt/hvcluster/hv-hostd --config /etc/hvcluster/cluster.toml \
         --host h1 --psi-source /nonexistent/pressure\nWatchdogSec=3s\n",
    );
    // A guest agent in the same container, with the shipped guest unit: never on one
    // machine with a host agent in production, here only to see its unit run.
    write(&etc.join("guest.key"), "0123456789abcdef0123456789abcdef");
    std::fs::set_permissions(
        etc.join("guest.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    write(
        &etc.join("guest.toml"),
        "[cluster]\nname = \"lab-systemd-guests\"\nkey_file = \"guest.key\"\n\n\
         [[interconnect]]\nname = \"gic0\"\nport = 5430\n\n\
         [[node]]\nname = \"g1\"\nnode_id = 1\naddresses = { gic0 = \"127.0.0.1\" }\n\n\
         [[node]]\nname = \"g2\"\nnode_id = 2\naddresses = { gic0 = \"127.0.0.2\" }\n",
    );
    let guest_dropin = units.join("hv-guestd.service.d");
    std::fs::create_dir_all(&guest_dropin).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/systemd/hvcluster-guest.hv-guestd.service"),
        units.join("hv-guestd.service"),
    )
    .unwrap();
    write(
        &guest_dropin.join("lab.conf"),
        "[Service]\nExecStart=\nExecStart=/opt/hvcluster/hv-guestd --config /etc/hvcluster/guest.toml \
         --node g1\n",
    );
    write(
        &units.join("hvlab.target"),
        "[Unit]\nDescription=hvcluster lab host\nWants=hv-hostd.service hv-guestd.service\n",
    );
    let machine = format!("hvlabsd{}", std::process::id());
    let bind = |from: &Path, to: &str| format!("--bind-ro={}:{to}", from.display());
    let console = std::fs::File::create(dir.join("console.log")).unwrap();
    let nspawn = Command::new("systemd-nspawn")
        .args(["--quiet", "--register=no", "--keep-unit", "--volatile=yes"])
        .args(["--directory=/", "--private-network"])
        .arg(format!("--machine={machine}"))
        .arg(bind(&bin.join("hv-hostd"), "/opt/hvcluster/hv-hostd"))
        .arg(bind(&etc, "/etc/hvcluster"))
        .arg(bind(
            &units.join("hv-hostd.service"),
            "/etc/systemd/system/hv-hostd.service",
        ))
        .arg(bind(&dropin, "/etc/systemd/system/hv-hostd.service.d"))
        .arg(bind(
            &units.join("hvlab.target"),
            "/etc/systemd/system/hvlab.target",
        ))
        .arg(bind(&bin.join("hv-guestd"), "/opt/hvcluster/hv-guestd"))
        .arg(bind(
            &units.join("hv-guestd.service"),
            "/etc/systemd/system/hv-guestd.service",
        ))
        .arg(bind(
            &guest_dropin,
            "/etc/systemd/system/hv-guestd.service.d",
        ))
        // Arguments for the container's systemd: boot to the lab target only, without
        // the first-boot questions, and without what this machine's own configuration
        // would start that the lab has nothing for (its firewall, waiting for a network).
        .args([
            "--boot",
            "systemd.unit=hvlab.target",
            "systemd.firstboot=off",
            "systemd.mask=nftables.service",
            "systemd.mask=systemd-networkd-wait-online.service",
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .expect("systemd-nspawn (Debian's systemd-container)");
    Container { nspawn, machine }
}

fn message(entry: &serde_json::Value) -> &str {
    entry["MESSAGE"].as_str().unwrap_or("")
}

#[test]
fn lab_systemd() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "lab-systemd needs root (it boots a container)"
    );
    let bin: PathBuf = hvlab::cluster::bin_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = boot(dir.path(), &bin);

    // Readiness: active only after READY=1 (Type=notify), with the agent's status line.
    c.wait("hv-hostd active", Duration::from_secs(120), |c| {
        c.property("hv-hostd", "ActiveState") == "active"
    });
    assert_eq!(c.property("hv-hostd", "Type"), "notify");
    c.wait("the status line naming h2", Duration::from_secs(30), |c| {
        c.property("hv-hostd", "StatusText").contains("h2")
    });
    let first = c.property("hv-hostd", "MainPID");

    // The watchdog: a frozen agent is killed and started again.
    let out = c.run(&["kill", "-STOP", &first]);
    assert!(out.status.success(), "{out:?}");
    c.wait(
        "a restart after the watchdog",
        Duration::from_secs(60),
        |c| {
            c.property("hv-hostd", "NRestarts") == "1"
                && c.property("hv-hostd", "ActiveState") == "active"
                && c.property("hv-hostd", "MainPID") != first
        },
    );
    let journal = c.journal();
    assert!(
        journal
            .iter()
            .any(|e| message(e).contains("Failed with result 'watchdog'")),
        "no watchdog failure in the journal: {journal:?}"
    );

    // The journal: the agent's own entries with their priorities and fields.
    let agent: Vec<_> = journal
        .iter()
        .filter(|e| e["SYSLOG_IDENTIFIER"] == "hv-hostd")
        .collect();
    let warning = agent
        .iter()
        .find(|e| message(e).contains("cannot read CPU pressure"))
        .unwrap_or_else(|| panic!("no pressure warning from the agent: {agent:?}"));
    assert_eq!(warning["PRIORITY"], "4", "{warning}");
    assert_eq!(warning["HV_SOURCE"], "/nonexistent/pressure", "{warning}");
    let started = agent
        .iter()
        .find(|e| message(e).contains("agent started"))
        .unwrap_or_else(|| panic!("no start event from the agent: {agent:?}"));
    assert_eq!(started["PRIORITY"], "5", "{started}");

    // The guest unit: ready, with its status line, and a clean stop.
    c.wait("hv-guestd active", Duration::from_secs(60), |c| {
        c.property("hv-guestd", "ActiveState") == "active"
    });
    c.wait(
        "the guest's status line naming g2",
        Duration::from_secs(30),
        |c| c.property("hv-guestd", "StatusText").contains("g2"),
    );
    let out = c.run(&["systemctl", "stop", "hv-guestd"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(c.property("hv-guestd", "Result"), "success");
    assert_eq!(c.property("hv-guestd", "ExecMainStatus"), "0");

    // A clean stop.
    let out = c.run(&["systemctl", "stop", "hv-hostd"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(c.property("hv-hostd", "ActiveState"), "inactive");
    assert_eq!(c.property("hv-hostd", "Result"), "success");
    assert_eq!(c.property("hv-hostd", "ExecMainStatus"), "0");
}
