//! hvctl against a real guest agent: a one-node guest cluster on 127.0.0.1 whose only
//! application has one cmdline resource that creates, removes and tests a marker file.
//!
//! hv-guestd is another package's binary, so cargo does not build it for this test:
//! scripts/test.sh builds every binary first (or run `cargo build -p
//! hvcluster-guest-agent`). A missing binary fails the test, naming what to build.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hvcluster_common::admin::{AppLine, GuestNodeState, GuestStatus, Response};
use hvcluster_common::application::AppState;

/// Longest wait for the agent to bring the application where a step wants it.
const SETTLE: Duration = Duration::from_secs(30);

/// Where hv-guestd is: next to hvctl in cargo's target directory (or `HVLAB_BIN_DIR`,
/// as for the lab).
fn guestd_binary() -> PathBuf {
    let dir = match std::env::var_os("HVLAB_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_hvctl"))
            .parent()
            .expect("hvctl has a directory")
            .to_path_buf(),
    };
    let bin = dir.join("hv-guestd");
    assert!(
        bin.is_file(),
        "{} does not exist: this test runs the real guest agent, which cargo does not build \
         for hvctl's tests. Build it first: cargo build -p hvcluster-guest-agent (scripts/test.sh \
         builds every binary before the tests), or point HVLAB_BIN_DIR at the binaries",
        bin.display()
    );
    bin
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A guest agent running in a temporary directory; stopped when dropped.
struct Guest {
    dir: tempfile::TempDir,
    socket: PathBuf,
    marker: PathBuf,
    agent: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGTERM to `pid`.
fn terminate(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

impl Guest {
    fn start() -> Guest {
        let bin = guestd_binary();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("guest.key");
        std::fs::write(&key, b"0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let marker = dir.path().join("web.running");
        let port = free_udp_port();
        let config = dir.path().join("guest.toml");
        std::fs::write(
            &config,
            format!(
                r#"[cluster]
name = "hvctl-test"
key_file = "guest.key"

[heartbeat]
interval_ms = 100
suspect_after_ms = 400
dead_after_ms = 1000

[[interconnect]]
name = "gic0"
port = {port}

[[node]]
name = "vm1"
node_id = 1
addresses = {{ gic0 = "127.0.0.1" }}

[[application]]
name = "web"
nodes = ["vm1"]

[[application.resource]]
name = "marker"
type = "cmdline"
start = "touch '{m}'"
stop = "rm -f '{m}'"
check = "test -f '{m}'"
check_interval_s = 1
start_timeout_s = 10
stop_timeout_s = 10
check_timeout_s = 10
"#,
                m = marker.display()
            ),
        )
        .unwrap();
        let socket = dir.path().join("guestd.sock");
        let state = dir.path().join("state");
        let agent = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["--node", "vm1"])
            .arg("--admin-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("hv-guestd.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut guest = Guest {
            dir,
            socket,
            marker,
            agent,
        };
        let deadline = Instant::now() + SETTLE;
        while !guest.socket.exists() {
            if let Ok(Some(status)) = guest.agent.try_wait() {
                panic!("hv-guestd exited ({status}) at start:\n{}", guest.log());
            }
            assert!(
                Instant::now() < deadline,
                "hv-guestd made no admin socket:\n{}",
                guest.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        guest
    }

    /// Stops the agent with SIGTERM, which lets it stop the application (reason SHUT);
    /// kills it if that takes too long. False when it had to be killed.
    fn stop(&mut self) -> bool {
        if let Ok(Some(_)) = self.agent.try_wait() {
            return true;
        }
        let _ = terminate(self.agent.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.agent.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hv-guestd.log")).unwrap_or_default()
    }

    fn hvctl(&self, args: &[&str]) -> Run {
        hvctl_at(&self.socket, args)
    }

    /// `hvctl status --json`, read back as the agent's answer.
    fn status(&self) -> GuestStatus {
        let r = self.hvctl(&["status", "--json"]);
        assert_eq!(r.code, 0, "status --json: {}\n{}", r.stderr, self.log());
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("status --json is not a guest status ({e}):\n{}", r.stdout))
    }

    /// Runs `args`, which must succeed.
    fn done(&self, args: &[&str]) -> String {
        let r = self.hvctl(args);
        assert_eq!(
            r.code,
            0,
            "hvctl {args:?}: {}{}\n{}",
            r.stdout,
            r.stderr,
            self.log()
        );
        r.stdout
    }

    /// Runs `args`, which the agent must refuse with a message containing `why`.
    fn refused(&self, args: &[&str], why: &str) {
        let r = self.hvctl(args);
        assert_eq!(r.code, 1, "hvctl {args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.starts_with("hvctl: refused: ") && r.stderr.contains(why),
            "hvctl {args:?}: {}",
            r.stderr
        );
    }

    /// Waits until application `web` satisfies `want`; returns its line.
    fn wait_for(&self, what: &str, want: impl Fn(&AppLine) -> bool) -> AppLine {
        let deadline = Instant::now() + SETTLE;
        loop {
            let s = self.status();
            let web = s
                .applications
                .iter()
                .find(|a| a.name == "web")
                .unwrap_or_else(|| panic!("no application web in {s:?}"))
                .clone();
            if want(&web) {
                return web;
            }
            assert!(
                Instant::now() < deadline,
                "web never became {what}: last {web:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn online_here(a: &AppLine) -> bool {
    a.state == AppState::Online
        && a.online_on.as_deref() == Some("vm1")
        && a.resources.iter().all(|r| r.running.is_none())
}

fn offline(a: &AppLine) -> bool {
    a.state == AppState::Offline
        && a.online_on.is_none()
        && a.resources.iter().all(|r| r.running.is_none())
}

#[test]
fn operator_commands_against_a_real_guest_agent() {
    let mut g = Guest::start();

    // The only node is UP and the application starts by itself (AutoStartUp).
    let s = g.status();
    assert_eq!(s.cluster, "hvctl-test");
    assert_eq!(s.node, "vm1");
    assert_eq!(s.nodes.len(), 1);
    assert!(s.nodes[0].me && s.nodes[0].state == GuestNodeState::Up);
    g.wait_for("Online on vm1", online_here);
    assert!(g.marker.exists(), "the start did not create the marker");

    // The table names the node and the application.
    let table = g.done(&["status"]);
    assert!(
        table.starts_with("guest cluster hvctl-test  seen from vm1 (node 1)"),
        "{table}"
    );
    assert!(
        table.contains("vm1 *") && table.contains("UP") && table.contains("this node"),
        "{table}"
    );
    assert!(
        table.contains("web") && table.contains("marker Online"),
        "{table}"
    );

    let said = g.done(&["app", "offline", "web"]);
    assert!(said.contains("web"), "{said}");
    g.wait_for("Offline", offline);
    assert!(!g.marker.exists(), "the stop did not remove the marker");
    g.refused(&["app", "offline", "web"], "already Offline");

    g.done(&["app", "online", "web"]);
    g.wait_for("Online again", online_here);
    assert!(g.marker.exists(), "the start did not create the marker");

    // Maintenance: no automatic action, and the other commands wait for it to end.
    g.done(&["app", "maintenance", "web", "on"]);
    let web = g.wait_for("in maintenance", |a| a.maintenance);
    assert_eq!(web.state, AppState::Maintenance);
    assert!(g.done(&["status"]).contains("MAINTENANCE"));
    g.refused(&["app", "offline", "web"], "maintenance");
    g.refused(
        &["app", "maintenance", "web", "on"],
        "already in maintenance",
    );
    g.done(&["app", "maintenance", "web", "off"]);
    g.wait_for("out of maintenance, Online", |a| {
        !a.maintenance && online_here(a)
    });
    assert!(g.marker.exists());

    // Refusals carry the agent's words and change nothing.
    g.refused(&["app", "switch", "web", "vm9"], "no node \"vm9\"");
    g.refused(&["app", "switch", "nosuch"], "no application \"nosuch\"");
    g.refused(&["app", "clear", "web"], "not Faulted");
    g.refused(&["node", "down", "vm1", "--yes"], "the node you are on");
    // A host-agent command reaches the wrong kind of agent: its answer is shown.
    g.refused(&["fence", "history"], "guest agent");
    g.wait_for("still Online", online_here);
    assert!(g.marker.exists());

    // The events are the same stream as a host agent's.
    let events = g.done(&["events"]);
    assert!(
        events.contains("operator: hvctl app offline web: done"),
        "{events}"
    );
    assert!(
        events.contains("operator: hvctl node down vm1: refused"),
        "{events}"
    );
    let json = g.done(&["events", "--json"]);
    for line in json.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["observer"], "vm1", "{line}");
    }

    // Stopping the agent stops the application (reason SHUT).
    assert!(
        g.stop(),
        "hv-guestd did not stop within 10 s of SIGTERM:\n{}",
        g.log()
    );
    assert!(
        !g.marker.exists(),
        "the agent stopped without stopping web:\n{}",
        g.log()
    );
}

#[test]
fn node_down_without_a_terminal_asks_for_yes_before_connecting() {
    // No agent needed: the refusal comes first.
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .args([
            "--socket",
            "/nonexistent/guestd.sock",
            "node",
            "down",
            "vm2",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("hvctl node down vm2 --yes"), "{stderr}");
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

/// Serves one connection at `socket`: reads one request line, answers `answer`, and
/// returns the request it read.
fn stand_in(socket: &Path, answer: &Response) -> std::thread::JoinHandle<String> {
    let listener = UnixListener::bind(socket).unwrap();
    let answer = format!("{}\n", serde_json::to_string(answer).unwrap());
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        (&stream).write_all(answer.as_bytes()).unwrap();
        request.trim().to_string()
    })
}

/// Runs hvctl on `socket`, standard input not a terminal (as in a script).
fn hvctl_at(socket: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn app_commands_send_the_guest_requests() {
    let dir = tempfile::tempdir().unwrap();
    let done = Response::Done {
        message: "web: placed on node vm2".into(),
    };
    for (i, (args, sent)) in [
        (
            &["app", "switch", "web", "vm2"][..],
            r#"{"cmd":"app-switch","app":"web","node":"vm2"}"#,
        ),
        (
            &["app", "switch", "web"],
            r#"{"cmd":"app-switch","app":"web","node":null}"#,
        ),
        (
            &["app", "online", "web"],
            r#"{"cmd":"app-online","app":"web"}"#,
        ),
        (
            &["app", "offline", "web"],
            r#"{"cmd":"app-offline","app":"web"}"#,
        ),
        (
            &["app", "clear", "web"],
            r#"{"cmd":"app-clear","app":"web"}"#,
        ),
        (
            &["app", "maintenance", "web", "off"],
            r#"{"cmd":"app-maintenance","app":"web","on":false}"#,
        ),
        (
            &["node", "down", "vm2", "--yes"],
            r#"{"cmd":"node-down","node":"vm2"}"#,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let socket = dir.path().join(format!("{i}.sock"));
        let served = stand_in(&socket, &done);
        let r = hvctl_at(&socket, args);
        assert_eq!(served.join().unwrap(), sent, "{args:?}");
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "web: placed on node vm2\n", "{args:?}");
    }
}

#[test]
fn a_host_agent_refusing_a_guest_command_is_shown_as_it_said() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hostd.sock");
    let served = stand_in(
        &socket,
        &Response::Refused {
            message: "app-online is a guest-cluster command and this is the host agent: run \
                      it inside a guest of the guest cluster"
                .into(),
        },
    );
    let r = hvctl_at(&socket, &["app", "online", "web"]);
    served.join().unwrap();
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("hvctl: refused: app-online is a guest-cluster command"),
        "{}",
        r.stderr
    );
}

#[test]
fn status_renders_a_guest_answer_and_json_prints_it_as_is() {
    let status: GuestStatus = serde_json::from_str(
        r#"{"cluster":"shop","node":"vm1","node_id":1,"incarnation":5,"started_unix_ms":0,
        "coordinator":"vm1",
        "nodes":[{"name":"vm1","node_id":1,"me":true,"state":"UP","incarnation":5,"last_heard_ms":0},
                 {"name":"vm2","node_id":2,"me":false,"state":"LEFTCLUSTER","incarnation":4,"last_heard_ms":12000}],
        "applications":[{"name":"web","state":"Online","online_on":"vm1","target":"vm1","maintenance":false,
            "nodes":[{"node":"vm1","state":"Online","fault":null},{"node":"vm2","state":"Unknown","fault":null}],
            "resources":[{"name":"ip","state":"online","running":null}]}],
        "counters":{}}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let answer = Response::GuestStatus(Box::new(status.clone()));

    let socket = dir.path().join("a.sock");
    let served = stand_in(&socket, &answer);
    let r = hvctl_at(&socket, &["status"]);
    assert_eq!(served.join().unwrap(), r#"{"cmd":"status"}"#);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("LEFTCLUSTER"), "{}", r.stdout);
    assert!(r.stdout.contains("hvctl node down vm2"), "{}", r.stdout);
    assert!(r.stdout.contains("ip Online"), "{}", r.stdout);

    let socket = dir.path().join("b.sock");
    let served = stand_in(&socket, &answer);
    let r = hvctl_at(&socket, &["status", "--json"]);
    served.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let back: GuestStatus = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(back, status);
}

/// `hvctl events | head -1`: the reader goes away after one line; hvctl stops quietly.
#[test]
fn events_to_a_reader_that_goes_away_end_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        for seq in 0..20_000u64 {
            let e = Response::Event(hvcluster_common::admin::EventRecord {
                seq,
                unix_us: seq,
                observer: "vm1".into(),
                subject: Some("web".into()),
                kind: "app_state".into(),
                message: "web: Offline -> Wait".into(),
                detail: serde_json::json!({}),
            });
            let line = format!("{}\n", serde_json::to_string(&e).unwrap());
            if (&stream).write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} events | head -1",
            env!("CARGO_BIN_EXE_hvctl"),
            socket.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    server.join().unwrap();
}
