//! Regression cases of the guest core as readable text, in
//! `common/tests/testdata/guest/*.txt`: commands (what arrives: time passing, a
//! partition, a host's message, an operator's request) each followed by what the
//! cluster did (indented). Set `UPDATE_GUEST_CASES=1` to rewrite the expected lines.
//!
//! Commands:
//! - `start N APP=gA,gB,... [link] [halt]`: N nodes, one application (most preferred
//!   node first), every node linked to its own host `hvI`, HaltFlag;
//! - `wait 2s` (nothing shown), `run 2s`;
//! - `isolate gI`, `heal`, `crash gI`, `pause gI 2s` (frozen: a migration's last step);
//! - `host gI down HOST gJ...`: a host-down notice to gI naming its partners that ran
//!   on HOST; `host gI prepare ID MS`, `host gI end ID`: a migration; `link gI HOST`;
//! - `gate-drain gI`: the hosts' kill gate has just taken gI's burst of requests;
//! - `operator gI node-down gJ`, `operator gI switch APP [gJ]`;
//! - `fail gI stop|start APP`: the next such operation fails;
//! - `show APP`, `show nodes gI`.

use std::path::Path;
use std::time::Duration;

use super::cluster::{app, id, Cluster};
use crate::admin::Request;
use crate::application::OpKind;
use crate::hostlink::LinkMessage;

fn node(word: &str) -> usize {
    let n: usize = word
        .strip_prefix('g')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a node: {word}"));
    n - 1
}

fn duration(word: &str) -> Duration {
    let ms: f64 = word
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a duration: {word}"));
    Duration::from_millis((ms * 1000.0) as u64)
}

struct Runner {
    cluster: Option<Cluster>,
    epoch: u64,
}

impl Runner {
    fn c(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("start comes first")
    }

    /// Runs one command; returns the lines it shows.
    fn command(&mut self, line: &str) -> Vec<String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["start", n, spec, flags @ ..] => {
                let (name, nodes) = spec.split_once('=').expect("APP=gA,gB");
                let nodes: Vec<_> = nodes.split(',').map(|n| id(node(n))).collect();
                let halt = flags.contains(&"halt");
                let mut c =
                    Cluster::new(n.parse().expect("a number"), vec![app(name, &nodes, halt)]);
                if flags.contains(&"link") {
                    c.link_all();
                }
                self.cluster = Some(c);
                self.c().take_log();
                return Vec::new();
            }
            ["wait", d] => {
                self.c().run(duration(d));
                self.c().take_log();
                return Vec::new();
            }
            ["run", d] => self.c().run(duration(d)),
            ["isolate", g] => self.c().isolate(node(g)),
            ["heal"] => self.c().cut.clear(),
            ["crash", g] => self.c().crash(node(g)),
            ["pause", g, d] => self.c().pause(node(g), duration(d)),
            ["link", g, host] => self.c().link(node(g), host),
            ["host", g, "down", host, guests @ ..] => {
                self.epoch += 1;
                let epoch = self.epoch;
                let c = self.c();
                let guests = guests
                    .iter()
                    .map(|g| (id(node(g)), c.incarnation(node(g))))
                    .collect();
                let m = LinkMessage::HostDown {
                    epoch,
                    host: host.to_string(),
                    proof: "power-off".into(),
                    guests,
                };
                c.step(node(g), crate::guest::Event::Link(m));
            }
            ["host", g, "prepare", id, ms] => {
                let m = LinkMessage::MigrationPrepare {
                    id: id.parse().expect("a number"),
                    hold_ms: ms.parse().expect("a number"),
                };
                self.c().step(node(g), crate::guest::Event::Link(m));
            }
            ["host", g, "end", id] => {
                let m = LinkMessage::MigrationEnd {
                    id: id.parse().expect("a number"),
                };
                self.c().step(node(g), crate::guest::Event::Link(m));
            }
            ["gate-drain", g] => {
                let c = self.c();
                let asker = ("erp".to_string(), id(node(g)));
                for n in 0..crate::kill_gate::BURST {
                    c.gate.admit(c.now, &asker, &("other".into(), n), None);
                }
            }
            ["operator", g, "node-down", target] => {
                let request = Request::NodeDown {
                    node: target.to_string(),
                };
                self.c().operator(node(g), request);
            }
            ["operator", g, "switch", app, target @ ..] => {
                let request = Request::AppSwitch {
                    app: app.to_string(),
                    node: target.first().map(|t| t.to_string()),
                };
                self.c().operator(node(g), request);
            }
            ["fail", g, op, app] => {
                let kind = match *op {
                    "stop" => OpKind::Stop,
                    "start" => OpKind::Start,
                    other => panic!("not an operation: {other}"),
                };
                let c = self.c();
                let a = c.specs.iter().position(|s| s.name == *app).expect("an app");
                c.fail.push((node(g), a, kind));
            }
            ["show", "nodes", g] => {
                let c = self.c();
                let i = node(g);
                let seen: Vec<String> = (0..c.cores.len())
                    .filter(|&j| j != i)
                    .map(|j| format!("g{} {}", id(j), c.node_state(i, j).expect("a node")))
                    .collect();
                c.log.push(format!("{g} sees {}", seen.join(", ")));
            }
            ["show", app] => {
                let c = self.c();
                let a = c.specs.iter().position(|s| s.name == *app).expect("an app");
                let states: Vec<String> = (0..c.cores.len())
                    .filter(|&i| c.cores[i].is_some())
                    .map(|i| format!("g{} {}", id(i), c.app_state(i, a)))
                    .collect();
                let on: Vec<String> = c.running_on(a).iter().map(|n| format!("g{n}")).collect();
                let on = if on.is_empty() {
                    "nowhere".to_string()
                } else {
                    on.join(", ")
                };
                c.log
                    .push(format!("{app}: {}; runs on {on}", states.join(", ")));
            }
            _ => panic!("unknown command: {line}"),
        }
        self.c().take_log()
    }
}

/// Runs one case file; returns the file as it should read.
fn run_case(text: &str) -> String {
    let mut runner = Runner {
        cluster: None,
        epoch: 0,
    };
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("  ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        for shown in runner.command(trimmed) {
            out.push_str("  ");
            out.push_str(&shown);
            out.push('\n');
        }
    }
    out
}

#[test]
fn guest_regression_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/guest");
    let update = std::env::var_os("UPDATE_GUEST_CASES").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case in {}", dir.display());
    let mut failed = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable case");
        let got = run_case(&text);
        if got == text {
            continue;
        }
        if update {
            std::fs::write(&file, &got).expect("a writable case");
        } else {
            println!("--- {} differs; it now reads:\n{got}", file.display());
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "cases whose output changed (UPDATE_GUEST_CASES=1 rewrites them): {failed:?}"
    );
}
