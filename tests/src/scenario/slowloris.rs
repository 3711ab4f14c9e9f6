//! A slow-loris attack on a host agent's host-link port, from inside a guest's
//! namespace (a compromised guest): many TCP connections that never register and send
//! one byte of a frame now and then. It runs on a thread of its own for a bounded time
//! and then closes what is left; the report says what the host did with each
//! connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use hvcluster_common::hostlink::LinkMessage;

use crate::cluster::LabCluster;

/// What became of the connections.
#[derive(Debug, Clone, Default)]
pub struct FloodReport {
    /// Connections opened.
    pub opened: u32,
    /// Connections that could not be opened.
    pub failed: u32,
    /// Closed by the host before it was sent anything (refused at once).
    pub refused: u32,
    /// Closed by the host later (its deadlines).
    pub cut: u32,
    /// Still open when the attack ended.
    pub held: u32,
    /// The longest a connection closed by the host was held, ms.
    pub longest_cut_ms: u64,
}

impl std::fmt::Display for FloodReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} opened ({} failed to open): {} refused at once, {} cut later (the longest \
             after {} ms), {} still held at the end",
            self.opened, self.failed, self.refused, self.cut, self.longest_cut_ms, self.held
        )
    }
}

/// The attack, running.
#[derive(Debug)]
pub struct Flood {
    thread: std::thread::JoinHandle<FloodReport>,
}

impl Flood {
    /// Opens `connections` connections from `via`'s namespace to its host's link port,
    /// then, on a thread, sends each one byte every `byte_every` for `length`.
    pub fn start(
        cluster: &LabCluster,
        via: &str,
        connections: u32,
        byte_every: Duration,
        length: Duration,
    ) -> anyhow::Result<Flood> {
        let host = cluster.lab.guest_host(via)?;
        let to = SocketAddr::new(
            cluster.lab.host_guest_lan_address(&host)?,
            hvcluster_common::config::DEFAULT_HOST_LINK_PORT,
        );
        // Hundreds of sockets: more than a default soft limit leaves for the rest.
        hvcluster_runtime::daemon::raise_fd_limit();
        let opened = cluster
            .lab
            .run_in_guest(via, move || open(to, connections))
            .with_context(|| format!("opening connections from {via}"))?;
        // A frame that is never whole in time: its bytes, one at a time.
        let frame =
            LinkMessage::Keepalive.to_frame(b"not the key of any guest cluster", 1, 1, 1, 1);
        let thread = std::thread::Builder::new()
            .name("link-flood".into())
            .spawn(move || trickle(opened, &frame, byte_every, length))?;
        Ok(Flood { thread })
    }

    /// Waits for the attack to end (at most `within`) and says what became of it.
    pub fn join(self, within: Duration) -> anyhow::Result<FloodReport> {
        let deadline = Instant::now() + within;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                anyhow::bail!("the link flood did not end within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the link flood's thread panicked"))
    }
}

/// Sockets opened, with when, and how many could not be.
type Opened = (Vec<(TcpStream, Instant)>, u32);

fn open(to: SocketAddr, connections: u32) -> Opened {
    let mut streams = Vec::new();
    let mut failed = 0;
    for _ in 0..connections {
        match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
            Ok(s) if s.set_nonblocking(true).is_ok() => streams.push((s, Instant::now())),
            _ => failed += 1,
        }
    }
    (streams, failed)
}

/// Whether the host closed `s` (end of stream or an error other than "no data yet").
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

fn trickle(opened: Opened, frame: &[u8], byte_every: Duration, length: Duration) -> FloodReport {
    let (streams, failed) = opened;
    let mut report = FloodReport {
        opened: streams.len() as u32,
        failed,
        ..FloodReport::default()
    };
    let mut live: Vec<(TcpStream, Instant, usize)> =
        streams.into_iter().map(|(s, at)| (s, at, 0)).collect();
    let end = Instant::now() + length;
    let mut next_byte = Instant::now();
    while Instant::now() < end && !live.is_empty() {
        let now = Instant::now();
        let send = now >= next_byte;
        if send {
            next_byte = now + byte_every;
        }
        live.retain_mut(|(s, at, sent)| {
            let mut gone = closed(s);
            if !gone && send {
                let byte = frame[*sent % frame.len()];
                gone = matches!(s.write(&[byte]), Err(e) if e.kind() != ErrorKind::WouldBlock);
                *sent += 1;
            }
            if gone {
                if *sent == 0 {
                    report.refused += 1;
                } else {
                    report.cut += 1;
                    let held = at.elapsed().as_millis() as u64;
                    report.longest_cut_ms = report.longest_cut_ms.max(held);
                }
            }
            !gone
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    report.held = live.len() as u32;
    report
}
