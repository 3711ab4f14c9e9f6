use super::*;
use crate::config::ConfigProblem;

mod applications;
mod cluster;

/// A complete, valid guest.toml; `@OCF@` stands for the fake OCF_ROOT of the fixture.
const GOOD: &str = r#"
[cluster]
name = "db"
key_file = "guest.key"

[heartbeat]
interval_ms = 100
suspect_after_ms = 400
dead_after_ms = 1000

[[interconnect]]
name = "gic0"

[[interconnect]]
name = "gic1"
port = 5407

[[node]]
name = "g1"
node_id = 1
addresses = { gic0 = "198.18.32.1", gic1 = "198.19.32.1" }
domain = "db-g1"

[[node]]
name = "g2"
node_id = 2
addresses = { gic0 = "198.18.32.2", gic1 = "198.19.32.2" }

[host_link]
transport = "tcp"
address = "198.18.0.1"
port = 5410
host_public_key = "ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b"

[[application]]
name = "web"
nodes = ["g1", "g2"]
restart_limit = 2
restart_window_s = 300

[[application.resource]]
name = "dummy"
type = "ocf"
agent = "heartbeat/Dummy"
ocf_root = "@OCF@"
params = { state = "/run/dummy.state", fake_2 = "x" }

[[application.resource]]
name = "ip"
type = "vip"
address = "198.18.32.200/24"
interface = "eth0"

[[application.resource]]
name = "app"
type = "cmdline"
start = "/usr/local/bin/app start"
stop = "/usr/local/bin/app stop"
check = "/usr/local/bin/app status"
flags = ["ALLEXITCODES", "AUTORECOVER"]
check_interval_s = 5
"#;

/// A directory with a 32-byte key and an executable `heartbeat/Dummy` under `ocf/`.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::config::keyfile::write_test_key(
        &dir.path().join("guest.key"),
        b"0123456789abcdef0123456789abcdef\n",
    );
    let agents = dir.path().join("ocf/resource.d/heartbeat");
    std::fs::create_dir_all(&agents).unwrap();
    write_agent(&agents.join("Dummy"), 0o755);
    dir
}

fn write_agent(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn load_in(dir: &Path, text: &str) -> Result<LoadedGuestConfig, ConfigErrors> {
    let text = text.replace("@OCF@", dir.join("ocf").to_str().unwrap());
    GuestConfig::load_str(&dir.join("guest.toml"), &text)
}

fn load(text: &str) -> Result<LoadedGuestConfig, ConfigErrors> {
    let dir = fixture();
    load_in(dir.path(), text)
}

/// The problem reported for `key`; fails listing every problem when there is none.
fn problem(text: &str, key: &str) -> ConfigProblem {
    let err = load(text).expect_err("the configuration should be refused");
    err.problems
        .iter()
        .find(|p| p.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("no problem for {key}:\n{err}"))
}

/// 1-based line of the only line of `text` containing `needle`.
fn line(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} is on lines {hits:?}");
    hits[0]
}

/// `line` of the `nth` (0-based) line of `text` containing `needle`.
fn nth_line(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not on {} lines", nth + 1))
}

/// Asserts the problem of `key` is on the line holding `needle`, and its message says
/// `says`.
fn assert_problem(text: &str, key: &str, needle: &str, says: &str) {
    let p = problem(text, key);
    assert_eq!(p.line, Some(line(text, needle)), "{key}: {}", p.message);
    assert!(p.message.contains(says), "{key}: {}", p.message);
}

/// `GOOD` with `line` replaced by `by` (the line must be unique).
fn edit(line_text: &str, by: &str) -> String {
    assert_eq!(GOOD.matches(line_text).count(), 1, "{line_text:?}");
    GOOD.replace(line_text, by)
}

#[test]
fn full_config_loads_with_defaults_and_key() {
    let dir = fixture();
    let loaded = load_in(dir.path(), GOOD).unwrap();
    let c = &loaded.config;
    assert_eq!(loaded.key, b"0123456789abcdef0123456789abcdef");
    assert_eq!(c.cluster.key_file, dir.path().join("guest.key"));
    assert_eq!(c.cluster.state_dir, PathBuf::from(DEFAULT_GUEST_STATE_DIR));
    assert_eq!(c.admin.socket, PathBuf::from(DEFAULT_GUEST_ADMIN_SOCKET));
    assert_eq!(c.heartbeat.rejoin_heartbeats, 3);
    assert_eq!(
        c.interconnects[0].port,
        crate::config::DEFAULT_HEARTBEAT_PORT
    );
    assert_eq!(c.node("g2").unwrap().domain, None);
    assert_eq!(c.host_link.transport, HostLinkTransport::Tcp);
    let app = &c.applications[0];
    assert!(app.auto_start_up);
    assert_eq!(
        app.auto_switch_over,
        vec![SwitchTrigger::HostFailure, SwitchTrigger::ResourceFailure]
    );
    assert!(!app.persistent_fault && !app.halt_flag && !app.online_priority);
    let kinds: Vec<_> = app.resources.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [ResourceKind::Ocf, ResourceKind::Vip, ResourceKind::Cmdline]
    );
    assert_eq!(app.resources[2].start_timeout_s, None);
}

#[test]
fn minimal_config_defaults() {
    let dir = fixture();
    let text =
        "[cluster]\nname = \"c\"\nkey_file = \"guest.key\"\n\n[[interconnect]]\nname = \"i\"\n\n\
                [[node]]\nname = \"a\"\nnode_id = 1\naddresses = { i = \"10.0.0.1\" }\n";
    let c = load_in(dir.path(), text).unwrap().config;
    assert_eq!(c.host_link, HostLinkSection::default());
    assert_eq!(c.heartbeat, HeartbeatSection::default());
    assert!(c.applications.is_empty());
}

#[test]
fn digest_follows_applications() {
    let a = load(GOOD).unwrap().digest;
    let b = load(&edit("restart_limit = 2", "restart_limit = 3"))
        .unwrap()
        .digest;
    assert_ne!(a, b);
}

#[test]
fn every_problem_at_once_in_line_order() {
    let text = edit("node_id = 2", "node_id = 0")
        .replace("dead_after_ms = 1000", "dead_after_ms = 100")
        .replace("agent = \"heartbeat/Dummy\"", "agent = \"Dummy\"")
        .replace("interface = \"eth0\"\n", "");
    let err = load(&text).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "heartbeat.dead_after_ms",
            "node[1].node_id",
            "application[0].resource[0].agent",
            "application[0].resource[1].interface",
        ]
    );
    let lines: Vec<_> = err.problems.iter().map(|p| p.line.unwrap()).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    let shown = err.to_string();
    let agent_line = line(&text, "agent = \"Dummy\"");
    assert!(
        shown.contains(&format!(
            "guest.toml:{agent_line}: application[0].resource[0].agent: \"Dummy\" is not PROVIDER/TYPE"
        )),
        "{shown}"
    );
}
