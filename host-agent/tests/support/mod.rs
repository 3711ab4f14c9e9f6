//! What the tests that start the real hv-hostd share: a two-host configuration on
//! loopback (the second host never starts), the agent's process, and reading datagrams.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Writes `cluster.toml` and its key into `dir`: host h1 on 127.0.0.1, h2 on 127.0.0.2,
/// kdump off. h1 keeps waiting for h2's heartbeats.
pub fn write_config(dir: &Path) -> PathBuf {
    let key = dir.join("cluster.key");
    std::fs::write(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("cluster.toml");
    let text = format!(
        r#"
[cluster]
name = "service-test"
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

/// hv-hostd as host h1 of the configuration in `dir`, its admin socket and state there,
/// its standard streams to nothing: the caller adds environment and streams.
pub fn hostd(dir: &Path) -> Command {
    let config = write_config(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hv-hostd"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--host", "h1"])
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A started agent, killed when dropped.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    /// Sends `sig` to the agent.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig).unwrap();
    }

    /// Waits for the agent to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "hv-hostd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every datagram that arrives within `window`, as bytes.
pub fn read_for(socket: &UnixDatagram, window: Duration) -> Vec<Vec<u8>> {
    let until = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return got
            }
            Err(e) => panic!("datagram socket: {e}"),
        }
    }
}

/// Reads datagrams until `wanted` accepts one, for at most `limit`; returns it. Fails
/// with what arrived otherwise.
pub fn wait_for(
    socket: &UnixDatagram,
    what: &str,
    limit: Duration,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < until {
        for d in read_for(socket, Duration::from_millis(500)) {
            let d = String::from_utf8_lossy(&d).into_owned();
            if wanted(&d) {
                return d;
            }
            seen.push(d);
        }
    }
    panic!("no {what} within {limit:?}; got {seen:?}");
}
