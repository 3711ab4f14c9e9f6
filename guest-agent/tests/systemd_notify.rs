//! hv-guestd as a `Type=notify` systemd service, against a real notify socket bound by
//! the test: `READY=1` with a status line naming the node it waits for, `WATCHDOG=1`
//! while its driver loop runs and none while it is frozen (SIGSTOP), `STOPPING=1` at
//! SIGTERM and a clean exit.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use hvcluster_runtime::testing::process::{self, Agent};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("guest.key");
    std::fs::write(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // db2 never starts: db1 keeps waiting for its heartbeats.
    let text = format!(
        r#"
[cluster]
name = "notify-guests"
key_file = "guest.key"

[[interconnect]]
name = "gic0"
port = {port}

[[node]]
name = "db1"
node_id = 1
addresses = {{ gic0 = "127.0.0.1" }}

[[node]]
name = "db2"
node_id = 2
addresses = {{ gic0 = "127.0.0.2" }}
"#
    );
    let config = dir.join("guest.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Every datagram within `window`, as text.
fn datagrams(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let got = process::read_for(socket, window);
    got.iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// The first datagram with `line` among its lines, within `limit`.
fn wait_for_line(socket: &UnixDatagram, line: &str, limit: Duration) -> String {
    process::wait_for(socket, line, limit, |d| d.lines().any(|l| l == line))
}

fn pings(datagrams: &[String]) -> usize {
    datagrams
        .iter()
        .filter(|d| d.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[test]
fn readiness_status_and_watchdog_follow_the_driver_loop() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hv-guestd"))
        .arg("--config")
        .arg(&config)
        .args(["--node", "db1"])
        .arg("--admin-socket")
        .arg(dir.path().join("admin.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);

    let ready = wait_for_line(&notify, "READY=1", Duration::from_secs(60));
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("waiting for heartbeats from db2")),
        "{ready:?}"
    );
    let running = datagrams(&notify, Duration::from_secs(2));
    assert!(pings(&running) >= 3, "{running:?}");

    agent.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    datagrams(&notify, Duration::from_millis(50));
    let frozen = datagrams(&notify, Duration::from_secs(2));
    assert_eq!(pings(&frozen), 0, "{frozen:?}");
    agent.signal(Signal::SIGCONT);
    wait_for_line(&notify, "WATCHDOG=1", Duration::from_secs(30));

    agent.signal(Signal::SIGTERM);
    wait_for_line(&notify, "STOPPING=1", Duration::from_secs(30));
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
}
