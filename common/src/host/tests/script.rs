//! Regression cases as text: `common/tests/testdata/host/*.txt`. Each case is a command,
//! `----`, and the effects it must give, one a line, in order; cases are separated by a
//! blank line and `#` starts a comment. `HOSTCORE_REWRITE=1` rewrites the expected
//! effects from what the core does (then read the difference before committing it).
//!
//! Commands (times in ms on the core's clock; this host is h1, see [`super::config`]):
//! - `run FROM TO alive=h2,h3 [guests=h2:erp/1]`: heartbeats of the live hosts every
//!   100 ms and a tick every 50 ms; heartbeat sends are left out of the effects
//! - `tick T`
//! - `kdump T ADDRESS [bytes=bad]`
//! - `fence-done T HOST LEVEL ok|fail DETAIL`
//! - `journaled T ok|fail DETAIL`: the latest journal write the core waits for
//! - `link T CONN erp/NODE_ID`
//! - `kill T CONN REQUEST erp/NODE_ID`
//! - `ack T CONN EPOCH`
//! - `answer T HOST ORDER ok|fail DETAIL`: HOST's heartbeat answers this host's order

use std::path::Path;

use super::*;
use crate::fencing::DownRecord;
use crate::host::{LimitedText, Linked};
use crate::hostlink::KillAnswer;

#[test]
fn text_cases_of_the_failover_path() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/host");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    let rewrite = std::env::var_os("HOSTCORE_REWRITE").is_some();
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let (got, mismatches) = run_file(&text);
        if rewrite {
            std::fs::write(&file, got).unwrap();
        } else {
            failures.extend(
                mismatches
                    .into_iter()
                    .map(|m| format!("{}: {m}", file.display())),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs every case of a file; returns the file as it would be with the effects the core
/// gave, and every case whose effects differ.
fn run_file(text: &str) -> (String, Vec<String>) {
    let mut core = core();
    let mut waiting: Option<DownRecord> = None;
    let (mut out, mut mismatches) = (String::new(), Vec::new());
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let block = block.trim_matches('\n');
        let (head, expected) = block.split_once("\n----").unwrap_or((block, ""));
        let command = head
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty());
        let command = command.unwrap_or_else(|| panic!("no command in {block:?}"));
        let effects = perform(&mut core, &mut waiting, command);
        for e in &effects {
            if let Effect::Journal { down: Some(d), .. } = e {
                waiting = Some(d.clone());
            }
        }
        let got: Vec<String> = effects.iter().map(show).collect();
        let want: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        if got != want {
            mismatches.push(format!(
                "{command}\nwant:\n{}\ngot:\n{}",
                want.join("\n"),
                got.join("\n")
            ));
        }
        out.push_str(head);
        out.push_str("\n----\n");
        for g in got {
            out.push_str(&g);
            out.push('\n');
        }
        out.push('\n');
    }
    (out.trim_end().to_string() + "\n", mismatches)
}

fn host(word: &str) -> NodeId {
    word.trim_start_matches('h').parse().unwrap()
}

fn guest(word: &str) -> (String, NodeId) {
    let (cluster, id) = word.split_once('/').unwrap();
    (cluster.to_string(), id.parse().unwrap())
}

fn perform(core: &mut HostCore, waiting: &mut Option<DownRecord>, command: &str) -> Vec<Effect> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let num = |i: usize| -> u64 { words[i].parse().unwrap() };
    let rest = |i: usize| words[i..].join(" ");
    match words[0] {
        "run" => {
            let mut alive: Vec<(NodeId, Vec<(String, NodeId)>)> = Vec::new();
            for w in &words[3..] {
                if let Some(hosts) = w.strip_prefix("alive=") {
                    alive = hosts.split(',').map(|h| (host(h), Vec::new())).collect();
                } else if let Some(g) = w.strip_prefix("guests=") {
                    for one in g.split(',') {
                        let (h, gs) = one.split_once(':').unwrap();
                        if let Some(a) = alive.iter_mut().find(|a| a.0 == host(h)) {
                            a.1.push(guest(gs));
                        }
                    }
                }
            }
            let owned: Vec<Vec<(&str, NodeId)>> = alive
                .iter()
                .map(|(_, gs)| gs.iter().map(|(c, n)| (c.as_str(), *n)).collect())
                .collect();
            let alive: Vec<(NodeId, &[(&str, NodeId)])> = alive
                .iter()
                .zip(&owned)
                .map(|((h, _), g)| (*h, &g[..]))
                .collect();
            run(core, (num(1), num(2)), &alive)
        }
        "tick" => core.tick(ms(num(1))),
        "kdump" => {
            let bytes = if words.get(3) == Some(&"bytes=bad") {
                vec![0; 3]
            } else {
                crate::kdump::notice_bytes().to_vec()
            };
            let from = format!("{}:4000", words[2]).parse().unwrap();
            core.step(ms(num(1)), Event::Kdump { from, bytes })
        }
        "fence-done" => core.step(
            ms(num(1)),
            Event::FenceLevelDone {
                target: host(words[2]),
                level: words[3].parse().unwrap(),
                ok: words[4] == "ok",
                detail: rest(5),
            },
        ),
        "journaled" => {
            let result = if words[2] == "ok" {
                Ok(())
            } else {
                Err(rest(3))
            };
            let down = waiting.take();
            core.step(ms(num(1)), Event::Journaled { down, result })
        }
        "link" => {
            let (cluster, node_id) = guest(words[3]);
            let guest = Linked {
                cluster,
                node: format!("g{node_id}"),
                node_id,
                incarnation: 10 + u64::from(node_id),
                domain: Some(format!("vm-g{node_id}")),
            };
            core.step(
                ms(num(1)),
                Event::GuestLinked {
                    conn: num(2),
                    guest,
                },
            )
        }
        "kill" => {
            let (cluster, node_id) = guest(words[4]);
            let (conn, request) = (num(2), num(3));
            core.step(
                ms(num(1)),
                Event::KillRequest {
                    conn,
                    request,
                    cluster,
                    node_id,
                },
            )
        }
        "ack" => core.step(
            ms(num(1)),
            Event::HostDownAck {
                conn: num(2),
                epoch: num(3),
            },
        ),
        "answer" => {
            let Event::Heartbeat {
                from,
                incarnation,
                accepted,
                mut payload,
            } = heartbeat(host(words[2]), &[])
            else {
                unreachable!()
            };
            let answer = KillAnswer {
                from_host: core.me(),
                id: num(3),
                ok: words[4] == "ok",
                detail: rest(5),
            };
            edit_sections(&mut payload, |s| s.kill_answers = vec![answer]);
            core.step(
                ms(num(1)),
                Event::Heartbeat {
                    from,
                    incarnation,
                    accepted,
                    payload,
                },
            )
        }
        other => panic!("unknown command {other:?} in {command:?}"),
    }
}

/// One effect, one line.
fn show(e: &Effect) -> String {
    match e {
        Effect::SendHeartbeats => "send heartbeats".into(),
        Effect::Rejoin => "rejoin".into(),
        Effect::Membership(m) => format!("membership: {m:?}"),
        Effect::MembershipLimited(m) => format!("membership (limited): {m:?}"),
        Effect::Journal { event, down: None } => format!("journal: {event:?}"),
        Effect::Journal {
            event,
            down: Some(_),
        } => format!("journal, then wait: {event:?}"),
        Effect::RunFenceLevel {
            target,
            level,
            devices,
        } => {
            format!(
                "run fence level {level} on h{target}: {}",
                devices.join(", ")
            )
        }
        Effect::Fence(f) => format!("fence: {f:?}"),
        Effect::JournalHealth(h) => format!("journal health: {h:?}"),
        Effect::HostDown(n) => format!("host down: h{n}"),
        Effect::Destroy { from, order, guest } => {
            format!(
                "destroy {} ({} of {}) for order {order} of h{from}",
                guest.domain, guest.node, guest.cluster
            )
        }
        Effect::SendToGuest { conn, message } => format!("to guest {conn}: {message:?}"),
        Effect::Record { kind, message, .. } => format!("record {kind}: {message}"),
        Effect::RecordLimited { kind, message, .. } => {
            format!(
                "record (limited) {kind}: {}",
                LimitedText::render(message, 1)
            )
        }
        Effect::Count(c) => format!("count {c}"),
        Effect::LogLimited { counter, message } => format!("log (limited) {counter}: {message}"),
    }
}
