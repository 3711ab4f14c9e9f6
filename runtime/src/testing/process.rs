//! A started agent process and the datagrams it sends (a notify socket, a journal): what
//! the tests of both agents that start the real binaries share.

use std::os::unix::net::UnixDatagram;
use std::process::Child;
use std::time::{Duration, Instant};

/// A started agent, killed when dropped.
#[derive(Debug)]
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
                "the agent did not exit within {limit:?}"
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
