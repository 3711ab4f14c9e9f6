//! `hvctl fence` and `hvctl host confirm-down` as an operator runs them: the confirmation
//! rule, argument errors, and exit statuses against a stand-in agent that answers one
//! canned line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn hvctl(socket: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        // Not a terminal: hvctl cannot ask, as in a script or a test.
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Serves one connection at `socket`: reads one request line, answers `answer`, and
/// returns the request it read.
fn agent(socket: &Path, answer: &str) -> JoinHandle<String> {
    let listener = UnixListener::bind(socket).unwrap();
    let answer = format!("{answer}\n");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        (&stream).write_all(answer.as_bytes()).unwrap();
        request.trim().to_string()
    })
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // No agent at all: the refusal comes before connecting.
    let socket = dir.path().join("none.sock");
    let r = hvctl(&socket, &["fence", "h3"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a terminal"), "{}", r.stderr);
    assert!(r.stderr.contains("hvctl fence h3 --yes"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot reach"), "{}", r.stderr);

    let r = hvctl(&socket, &["host", "confirm-down", "h3"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("hvctl host confirm-down h3 --yes"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("cannot reach"), "{}", r.stderr);

    // A host named like a subcommand gets the spelling that reaches it.
    let r = hvctl(&socket, &["fence", "--", "history"]);
    assert!(
        r.stderr.contains("hvctl fence --yes -- history"),
        "{}",
        r.stderr
    );
}

#[test]
fn argument_errors_exit_2() {
    let socket = Path::new("/nonexistent/hvctl-test.sock");
    for args in [
        &["fence"][..],
        &["fence", "h3", "history"],
        &["fence", "history", "--yes"],
        &["fence", "check", "h3"],
        &["host", "confirm-down"],
        &["host"],
    ] {
        let r = hvctl(socket, args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("Usage"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn an_unreachable_agent_exits_2() {
    let socket = Path::new("/nonexistent/hvctl-test.sock");
    for args in [
        &["fence", "h3", "--yes"][..],
        &["host", "confirm-down", "h3", "-y"],
        &["fence", "history"],
        &["fence", "check"],
    ] {
        let r = hvctl(socket, args);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.stderr.contains("cannot reach the agent"), "{}", r.stderr);
    }
}

#[test]
fn fence_started_exits_0_and_prints_the_agents_message() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a.sock");
    let served = agent(
        &socket,
        r#"{"type":"done","message":"fencing h3 from level 1; follow with hvctl events -f"}"#,
    );
    let r = hvctl(&socket, &["fence", "h3", "--yes"]);
    assert_eq!(served.join().unwrap(), r#"{"cmd":"fence","host":"h3"}"#);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "fencing h3 from level 1; follow with hvctl events -f\n"
    );
}

#[test]
fn a_refusal_exits_1_with_the_agents_reason() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a.sock");
    let served = agent(
        &socket,
        r#"{"type":"refused","message":"h2 is heard alive (state Up, last heard 0.1 s ago, links up: ic0)"}"#,
    );
    let r = hvctl(&socket, &["host", "confirm-down", "h2", "--yes"]);
    assert_eq!(
        served.join().unwrap(),
        r#"{"cmd":"confirm-down","host":"h2"}"#
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("hvctl: refused: h2 is heard alive (state Up"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_agent_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a.sock");
    let served = agent(&socket, r#"{"type":"error","message":"agent is stopping"}"#);
    let r = hvctl(&socket, &["fence", "h3", "--yes"]);
    served.join().unwrap();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("agent is stopping"), "{}", r.stderr);
}

#[test]
fn check_exits_1_when_a_device_failed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a.sock");
    let served = agent(
        &socket,
        &r#"{"type":"fence-check","devices":[
            {"name":"ipmi-h1","kind":"agent","ok":true,"elapsed_ms":812,"summary":"reachable"},
            {"name":"pdu-a","kind":"agent","ok":false,"elapsed_ms":20000,"summary":"(timed out after 20000 ms)"},
            {"name":"crash","kind":"kdump","ok":null,"elapsed_ms":null,"summary":"not checkable (kind kdump)"}]}"#
            .replace('\n', ""),
    );
    let r = hvctl(&socket, &["fence", "check"]);
    assert_eq!(served.join().unwrap(), r#"{"cmd":"fence-check"}"#);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not checkable (kind kdump)"),
        "{}",
        r.stdout
    );

    let socket = dir.path().join("b.sock");
    let served = agent(
        &socket,
        r#"{"type":"fence-check","devices":[{"name":"crash","kind":"kdump","ok":null,"elapsed_ms":null,"summary":"not checkable (kind kdump)"}]}"#,
    );
    let r = hvctl(&socket, &["fence", "check", "--json"]);
    served.join().unwrap();
    assert_eq!(r.code, 0);
    let line: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["name"], "crash");
}

#[test]
fn history_prints_a_utc_table_or_json_lines() {
    let answer = r#"{"type":"fence-history","hosts":[{"node_id":1,"name":"h1"},{"node_id":3,"name":"h3"}],"records":[
        {"seq":1,"unix_ms":1735689601000,"event":{"started":{"target":3,"level":1}}},
        {"seq":2,"unix_ms":1735689602000,"event":{"down":{"target":3,"incarnation":5,"proof":{"power_off":{"devices":["ipmi-h3"]}},"by":1}}}
        ],"damage":null}"#
        .replace('\n', "");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a.sock");
    let served = agent(&socket, &answer);
    let r = hvctl(&socket, &["fence", "history"]);
    assert_eq!(served.join().unwrap(), r#"{"cmd":"fence-history"}"#);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("time (UTC)"), "{}", r.stdout);
    assert!(r.stdout.contains("2025-01-01 00:00:01.000"), "{}", r.stdout);
    assert!(r.stdout.contains("fencing, level 1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("DOWN (power-off via ipmi-h3 by h1)"),
        "{}",
        r.stdout
    );

    let socket = dir.path().join("b.sock");
    let served = agent(&socket, &answer);
    let r = hvctl(&socket, &["fence", "history", "--json"]);
    served.join().unwrap();
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["host"], "h3");
    assert_eq!(lines[1]["unix_ms"], 1_735_689_602_000u64);
}
