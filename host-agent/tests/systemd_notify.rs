//! hv-hostd as a `Type=notify` systemd service, against a real notify socket: the test
//! binds the Unix datagram socket systemd would, starts the real binary with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, and reads what it says: `READY=1` with a status
//! line naming the host it waits for, `WATCHDOG=1` while its driver loop runs and none
//! while the agent is frozen (SIGSTOP), and `STOPPING=1` at SIGTERM.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{hostd, read_for, wait_for, Agent};

/// What systemd would pass: the watchdog time, so the agent pings every 100 ms.
const WATCHDOG_USEC: &str = "400000";

fn has_line(datagram: &str, pick: impl Fn(&str) -> bool) -> bool {
    datagram.lines().any(pick)
}

fn watchdog_pings(datagrams: &[Vec<u8>]) -> usize {
    datagrams
        .iter()
        .filter(|d| has_line(&String::from_utf8_lossy(d), |l| l == "WATCHDOG=1"))
        .count()
}

#[test]
fn readiness_status_and_watchdog_follow_the_driver_loop() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let child = hostd(dir.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .spawn()
        .unwrap();
    let mut agent = Agent(child);

    // Readiness comes with the first status line, which names what the agent waits for.
    let ready = wait_for(&notify, "READY=1", Duration::from_secs(60), |d| {
        has_line(d, |l| l == "READY=1")
    });
    assert!(
        has_line(&ready, |l| l.starts_with("STATUS=")
            && l.contains("waiting for heartbeats from h2")),
        "{ready:?}"
    );

    // The driver loop runs: pings arrive, about every 100 ms (at least a few in 2 s,
    // generous for a loaded machine).
    let running = read_for(&notify, Duration::from_secs(2));
    assert!(watchdog_pings(&running) >= 3, "{running:?}");

    // Frozen, the agent says nothing: systemd would find its watchdog time run out.
    agent.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    read_for(&notify, Duration::from_millis(50)); // what was sent before the stop
    let frozen = read_for(&notify, Duration::from_secs(2));
    assert_eq!(watchdog_pings(&frozen), 0, "{frozen:?}");

    // Thawed, it pings again.
    agent.signal(Signal::SIGCONT);
    wait_for(&notify, "WATCHDOG=1", Duration::from_secs(30), |d| {
        has_line(d, |l| l == "WATCHDOG=1")
    });

    // A clean stop says so, then exits with success.
    agent.signal(Signal::SIGTERM);
    let stopping = wait_for(&notify, "STOPPING=1", Duration::from_secs(30), |d| {
        has_line(d, |l| l == "STOPPING=1")
    });
    assert!(
        has_line(&stopping, |l| l
            .starts_with("STATUS=stopping: SIGTERM received")),
        "{stopping:?}"
    );
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
}

/// Without `NOTIFY_SOCKET` (started by hand), the agent runs as before and sends
/// nothing: the socket bound for this test hears nothing.
#[test]
fn without_notify_socket_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let notify = UnixDatagram::bind(dir.path().join("notify.sock")).unwrap();
    let child = hostd(dir.path())
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .spawn()
        .unwrap();
    let _agent = Agent(child);
    // Up once its admin socket exists.
    let until = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("admin.sock").exists() {
        assert!(Instant::now() < until, "hv-hostd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let heard = read_for(&notify, Duration::from_secs(1));
    assert!(heard.is_empty(), "{heard:?}");
}
