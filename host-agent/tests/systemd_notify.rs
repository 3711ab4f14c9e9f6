//! hv-hostd as a `Type=notify` systemd service, against a real notify socket: the test
//! binds the Unix datagram socket systemd would, starts the real binary with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, and reads what it says: `READY=1` with a status
//! line naming the host it waits for, `WATCHDOG=1` while its driver loop runs and none
//! while the agent is frozen (SIGSTOP), and `STOPPING=1` at SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What systemd would pass: the watchdog time, so the agent pings every 100 ms.
const WATCHDOG_USEC: &str = "400000";

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("cluster.key");
    std::fs::write(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("cluster.toml");
    // h2 never starts: h1 keeps waiting for its heartbeats, which the status must say.
    let text = format!(
        r#"
[cluster]
name = "notify-test"
key_file = "cluster.key"

[[interconnect]]
name = "ic0"
port = {port}

[[host]]
name = "h1"
node_id = 1
addresses = {{ ic0 = "127.0.0.1" }}

[[host]]
name = "h2"
node_id = 2
addresses = {{ ic0 = "127.0.0.2" }}

[kdump]
enabled = false
"#,
        port = free_udp_port()
    );
    std::fs::write(&config, text).unwrap();
    config
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Every datagram that arrives within `window`.
fn read_for(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let until = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return got
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

/// Reads datagrams until one has a line starting with `line`, for at most `limit`;
/// returns that datagram.
fn wait_for(socket: &UnixDatagram, line: &str, limit: Duration) -> String {
    let until = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < until {
        for d in read_for(socket, Duration::from_millis(500)) {
            if d.lines().any(|l| l.starts_with(line)) {
                return d;
            }
            seen.push(d);
        }
    }
    panic!("no {line:?} within {limit:?}; got {seen:?}");
}

fn watchdog_pings(datagrams: &[String]) -> usize {
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
    let child = Command::new(env!("CARGO_BIN_EXE_hv-hostd"))
        .arg("--config")
        .arg(&config)
        .args(["--host", "h1"])
        .arg("--admin-socket")
        .arg(dir.path().join("admin.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);

    // Readiness comes with the first status line, which names what the agent waits for.
    let ready = wait_for(&notify, "READY=1", Duration::from_secs(60));
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("waiting for heartbeats from h2")),
        "{ready:?}"
    );

    // The driver loop runs: pings arrive, about every 100 ms (at least a few in 2 s,
    // generous for a loaded machine).
    let running = read_for(&notify, Duration::from_secs(2));
    assert!(watchdog_pings(&running) >= 3, "{running:?}");

    // Frozen, the agent says nothing: systemd would find its watchdog time run out.
    signal(&agent.0, nix::sys::signal::Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    read_for(&notify, Duration::from_millis(50)); // what was sent before the stop
    let frozen = read_for(&notify, Duration::from_secs(2));
    assert_eq!(watchdog_pings(&frozen), 0, "{frozen:?}");

    // Thawed, it pings again.
    signal(&agent.0, nix::sys::signal::Signal::SIGCONT);
    wait_for(&notify, "WATCHDOG=1", Duration::from_secs(30));

    // A clean stop says so, then exits with success.
    signal(&agent.0, nix::sys::signal::Signal::SIGTERM);
    let stopping = wait_for(&notify, "STOPPING=1", Duration::from_secs(30));
    assert!(
        stopping
            .lines()
            .any(|l| l.starts_with("STATUS=stopping: SIGTERM received")),
        "{stopping:?}"
    );
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "hv-hostd did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Without `NOTIFY_SOCKET` (started by hand), the agent runs as before and sends
/// nothing: the socket bound for this test hears nothing.
#[test]
fn without_notify_socket_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hv-hostd"))
        .arg("--config")
        .arg(&config)
        .args(["--host", "h1"])
        .arg("--admin-socket")
        .arg(dir.path().join("admin.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent(child);
    // Up once its admin socket exists.
    let until = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("admin.sock").exists() {
        assert!(Instant::now() < until, "hv-hostd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let heard = read_for(&notify, Duration::from_secs(1));
    assert!(heard.is_empty(), "{heard:?}");
    drop(agent);
}
