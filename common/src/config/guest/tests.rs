use super::*;
use crate::config::ConfigProblem;

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
fn cluster_name_must_be_sane() {
    for bad in ["", "db cluster", "db/1"] {
        let text = edit("name = \"db\"", &format!("name = {bad:?}"));
        let p = problem(&text, "cluster.name");
        assert_eq!(p.line, Some(3), "{}", p.message);
        assert!(
            p.message.contains("not a valid guest cluster name"),
            "{}",
            p.message
        );
    }
}

#[test]
fn key_file_must_be_readable() {
    let dir = fixture();
    std::fs::remove_file(dir.path().join("guest.key")).unwrap();
    let err = load_in(dir.path(), GOOD).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.key, "cluster.key_file");
    assert_eq!(p.line, Some(line(GOOD, "key_file")));
    assert!(
        p.message.contains("cannot read the guest cluster key"),
        "{}",
        p.message
    );
}

#[test]
fn key_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fixture();
    let key = dir.path().join("guest.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let err = load_in(dir.path(), GOOD).unwrap_err();
    let p = &err.problems[0];
    assert_eq!((p.key.as_str(), p.line), ("cluster.key_file", Some(4)));
    assert!(p.message.contains("mode 0604"), "{}", p.message);
    assert!(
        p.message.contains(&format!("chmod 600 {}", key.display())),
        "{}",
        p.message
    );
}

#[test]
fn key_must_be_long_enough() {
    let dir = fixture();
    // Trailing line ends do not count, as for the host cluster key.
    std::fs::write(dir.path().join("guest.key"), b"0123456789abcde\n\n").unwrap();
    let err = load_in(dir.path(), GOOD).unwrap_err();
    let p = &err.problems[0];
    assert_eq!((p.key.as_str(), p.line), ("cluster.key_file", Some(4)));
    assert!(p.message.contains("holds 15 bytes"), "{}", p.message);
    assert!(
        p.message.contains("head -c 32 /dev/urandom"),
        "{}",
        p.message
    );
}

#[test]
fn heartbeat_timings_must_be_in_order() {
    let text = edit("interval_ms = 100", "interval_ms = 5");
    assert_problem(&text, "heartbeat.interval_ms", "interval_ms", "too short");
    let text = edit("suspect_after_ms = 400", "suspect_after_ms = 100");
    assert_problem(
        &text,
        "heartbeat.suspect_after_ms",
        "suspect_after_ms",
        "longer than interval_ms (100 ms)",
    );
    let text = edit("dead_after_ms = 1000", "dead_after_ms = 400");
    assert_problem(
        &text,
        "heartbeat.dead_after_ms",
        "dead_after_ms",
        "longer than suspect_after_ms (400 ms)",
    );
    let text = edit(
        "dead_after_ms = 1000",
        "dead_after_ms = 1000\nrejoin_heartbeats = 0",
    );
    assert_problem(
        &text,
        "heartbeat.rejoin_heartbeats",
        "rejoin_heartbeats",
        "at least 1",
    );
}

#[test]
fn interconnects_must_be_present_and_unique() {
    let text = GOOD
        .replace("[[interconnect]]\nname = \"gic0\"\n", "")
        .replace("[[interconnect]]\nname = \"gic1\"\nport = 5407\n", "")
        .replace(", gic1 = \"198.19.32.1\"", "")
        .replace(", gic1 = \"198.19.32.2\"", "");
    let p = problem(&text, "interconnect");
    assert_eq!(p.line, None);
    assert!(p.message.contains("no [[interconnect]]"), "{}", p.message);
    // With no interconnect, every node address names an unknown one.
    assert_problem(
        &text,
        "node[0].addresses.gic0",
        "198.18.32.1",
        "no [[interconnect]] named \"gic0\"",
    );

    let text = edit("name = \"gic1\"", "name = \"gic0\"");
    let p = problem(&text, "interconnect[1].name");
    assert_eq!(p.line, Some(nth_line(&text, "name = \"gic0\"", 1)));
    assert!(
        p.message.contains("already defined by interconnect[0]"),
        "{}",
        p.message
    );
}

#[test]
fn node_names_and_ids_must_be_unique() {
    let text = edit("name = \"g2\"", "name = \"g1\"");
    let p = problem(&text, "node[1].name");
    assert_eq!(p.line, Some(nth_line(&text, "name = \"g1\"", 1)));
    assert!(
        p.message.contains("already used by node[0]"),
        "{}",
        p.message
    );

    let text = edit("node_id = 2", "node_id = 1");
    let p = problem(&text, "node[1].node_id");
    assert_eq!(p.line, Some(nth_line(&text, "node_id = 1", 1)));
    assert!(
        p.message.contains("already used by node[0] (g1)"),
        "{}",
        p.message
    );

    let text = edit("node_id = 2", "node_id = 0");
    assert_problem(&text, "node[1].node_id", "node_id = 0", "start at 1");
}

#[test]
fn node_addresses_one_per_interconnect() {
    let text = edit(
        "addresses = { gic0 = \"198.18.32.2\", gic1 = \"198.19.32.2\" }",
        "addresses = { gic0 = \"198.18.32.2\" }",
    );
    assert_problem(
        &text,
        "node[1].addresses",
        "addresses = { gic0 = \"198.18.32.2\" }",
        "g2 has no address on interconnect \"gic1\"",
    );

    let text = edit(
        "gic1 = \"198.19.32.2\"",
        "gic1 = \"198.19.32.2\", gic9 = \"198.20.32.2\"",
    );
    assert_problem(
        &text,
        "node[1].addresses.gic9",
        "gic9",
        "no [[interconnect]] named \"gic9\"",
    );

    let text = edit("gic1 = \"198.19.32.2\"", "gic1 = \"198.18.32.1\"");
    assert_problem(
        &text,
        "node[1].addresses.gic1",
        "gic1 = \"198.18.32.1\" }",
        "already an address of node[0]",
    );
}

#[test]
fn unparseable_node_address_is_located() {
    let text = edit("gic1 = \"198.19.32.2\"", "gic1 = \"198.19.32\"");
    let err = load(&text).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.key, "addresses");
    assert_eq!(p.line, Some(line(&text, "\"198.19.32\"")));
    assert!(p.message.contains("invalid IP address"), "{}", p.message);
}

#[test]
fn host_link_needs_its_transport_fields() {
    let text = edit("port = 5410", "");
    assert_problem(
        &text,
        "host_link.port",
        "[host_link]",
        "transport = \"tcp\" needs port",
    );
    // The address may come from hv-guestd's command line instead.
    load(&edit("address = \"198.18.0.1\"", "")).unwrap();

    let vsock = edit("transport = \"tcp\"", "transport = \"vsock\"")
        .replace("address = \"198.18.0.1\"\n", "");
    load(&vsock).unwrap();
    assert_problem(
        &vsock.replace("port = 5410\n", ""),
        "host_link.port",
        "[host_link]",
        "transport = \"vsock\" needs port",
    );
    // A field of another transport would be ignored: it is an error.
    assert_problem(
        &edit("transport = \"tcp\"", "transport = \"vsock\""),
        "host_link.address",
        "address = \"198.18.0.1\"",
        "not used with transport = \"vsock\"",
    );

    let serial = edit(
        "transport = \"tcp\"\naddress = \"198.18.0.1\"\nport = 5410",
        "transport = \"virtio-serial\"\ndevice = \"/dev/virtio-ports/org.hvcluster.0\"",
    );
    load(&serial).unwrap();
    assert_problem(
        &serial.replace("device = \"/dev/virtio-ports/org.hvcluster.0\"\n", ""),
        "host_link.device",
        "[host_link]",
        "needs device",
    );
    assert_problem(
        &serial.replace("\"/dev/virtio-ports/org.hvcluster.0\"", "\"vport0p1\""),
        "host_link.device",
        "device =",
        "not an absolute path",
    );
}

#[test]
fn host_link_needs_the_hosts_public_key() {
    let key = "host_public_key = \"ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b\"\n";
    let p = problem(&edit(key, ""), "host_link.host_public_key");
    assert!(
        p.message.contains("needs host_public_key")
            && p.message.contains("hvctl config host-link-key"),
        "{}",
        p.message
    );
    assert_problem(
        &edit("\"ed25519:06d5", "\"ed25519:6d5"),
        "host_link.host_public_key",
        "host_public_key =",
        "expected \"ed25519:\" and 64 hexadecimal digits",
    );
    let loaded = load(GOOD).unwrap();
    assert_eq!(
        loaded
            .config
            .host_link
            .host_public_key()
            .map(|k| k.to_string()),
        Some(
            "ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b".to_string()
        )
    );
}

#[test]
fn host_link_none_needs_nothing() {
    let none = edit(
        &format!(
            "[host_link]\ntransport = \"tcp\"\naddress = \"198.18.0.1\"\nport = 5410\n\
             host_public_key = \"{}\"\n",
            "ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b"
        ),
        "",
    );
    load(&none).unwrap();
    let text = edit(
        "transport = \"tcp\"\naddress = \"198.18.0.1\"\n",
        "transport = \"none\"\n",
    )
    .replace("host_public_key = \"ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b\"\n", "");
    assert_problem(
        &text,
        "host_link.port",
        "port = 5410",
        "not used with transport = \"none\"",
    );
}

#[test]
fn application_names_unique_and_nodes_known() {
    let second = "\n[[application]]\nname = \"web\"\nnodes = []\n";
    let text = format!("{GOOD}{second}");
    let p = problem(&text, "application[1].name");
    assert_eq!(p.line, Some(nth_line(&text, "name = \"web\"", 1)));
    assert!(
        p.message.contains("already defined by application[0]"),
        "{}",
        p.message
    );
    assert_problem(&text, "application[1].nodes", "nodes = []", "names no node");
    // No resource: located at the application's header.
    let p = problem(&text, "application[1].resource");
    assert_eq!(p.line, Some(nth_line(&text, "[[application]]", 1)));
    assert!(p.message.contains("add at least one"), "{}", p.message);

    let text = edit(
        "nodes = [\"g1\", \"g2\"]",
        "nodes = [\"g1\", \"g3\", \"g1\"]",
    );
    for key in ["application[0].nodes[1]", "application[0].nodes[2]"] {
        let p = problem(&text, key);
        assert_eq!(p.line, Some(line(&text, "nodes =")), "{key}");
    }
    assert!(problem(&text, "application[0].nodes[1]")
        .message
        .contains("no [[node]] named \"g3\""));
    assert!(problem(&text, "application[0].nodes[2]")
        .message
        .contains("already listed as nodes[0]"));
}

#[test]
fn restart_limit_needs_a_window() {
    let text = edit("restart_window_s = 300", "restart_window_s = 0");
    assert_problem(
        &text,
        "application[0].restart_window_s",
        "restart_window_s = 0",
        "restart_limit is 2",
    );
    load(&text.replace("restart_limit = 2", "restart_limit = 0")).unwrap();
}

#[test]
fn resource_names_unique_in_application() {
    let text = edit("name = \"app\"", "name = \"ip\"");
    let p = problem(&text, "application[0].resource[2].name");
    assert_eq!(p.line, Some(nth_line(&text, "name = \"ip\"", 1)));
    assert!(
        p.message.contains("already defined by resource[1]"),
        "{}",
        p.message
    );
}

#[test]
fn cmdline_needs_start_stop_and_check() {
    let text = edit("start = \"/usr/local/bin/app start\"\n", "")
        .replace("stop = \"/usr/local/bin/app stop\"\n", "stop = \" \"\n")
        .replace("check = \"/usr/local/bin/app status\"\n", "");
    let header = nth_line(&text, "[[application.resource]]", 2);
    let p = problem(&text, "application[0].resource[2].start");
    assert_eq!(p.line, Some(header));
    assert!(p.message.contains("needs a start command"), "{}", p.message);
    assert_problem(
        &text,
        "application[0].resource[2].stop",
        "stop = \" \"",
        "needs a stop command",
    );
    let p = problem(&text, "application[0].resource[2].check");
    assert_eq!(p.line, Some(header));
    assert!(p.message.contains("NULLDETECTOR"), "{}", p.message);
}

#[test]
fn null_detector_excludes_a_check() {
    let unmonitored = edit("check = \"/usr/local/bin/app status\"\n", "")
        .replace("check_interval_s = 5\n", "")
        .replace("\"AUTORECOVER\"]", "\"NULLDETECTOR\"]");
    load(&unmonitored).unwrap();
    let text = edit("\"AUTORECOVER\"]", "\"NULLDETECTOR\"]");
    assert_problem(
        &text,
        "application[0].resource[2].check",
        "check = ",
        "NULLDETECTOR means the resource has no check command",
    );
    assert_problem(
        &text,
        "application[0].resource[2].check_interval_s",
        "check_interval_s",
        "never checked",
    );
}

#[test]
fn flags_only_on_cmdline() {
    let text = edit(
        "interface = \"eth0\"",
        "interface = \"eth0\"\nflags = [\"AUTORECOVER\"]",
    );
    assert_problem(
        &text,
        "application[0].resource[1].flags",
        "flags = [\"AUTORECOVER\"]",
        "only applies to type = \"cmdline\" resources, not \"vip\"",
    );
}

#[test]
fn fields_of_another_type_are_named() {
    let text = edit(
        "agent = \"heartbeat/Dummy\"",
        "agent = \"heartbeat/Dummy\"\nstart = \"x\"",
    );
    assert_problem(
        &text,
        "application[0].resource[0].start",
        "start = \"x\"",
        "start only applies to type = \"cmdline\" resources, not \"ocf\"",
    );
    let text = edit(
        "type = \"cmdline\"",
        "type = \"cmdline\"\nagent = \"heartbeat/Other\"\naddress = \"10.1.1.1/8\"",
    );
    assert_problem(
        &text,
        "application[0].resource[2].agent",
        "heartbeat/Other",
        "agent only applies to type = \"ocf\"",
    );
    assert_problem(
        &text,
        "application[0].resource[2].address",
        "10.1.1.1/8",
        "address only applies to type = \"vip\"",
    );
}

#[test]
fn ocf_agent_is_provider_slash_type() {
    let text = edit("agent = \"heartbeat/Dummy\"\n", "");
    let p = problem(&text, "application[0].resource[0].agent");
    assert_eq!(p.line, Some(nth_line(&text, "[[application.resource]]", 0)));
    assert!(p.message.contains("PROVIDER/TYPE"), "{}", p.message);
    for bad in ["Dummy", "heartbeat/", "../Dummy", "heartbeat/Dummy/x"] {
        let text = edit("agent = \"heartbeat/Dummy\"", &format!("agent = {bad:?}"));
        assert_problem(
            &text,
            "application[0].resource[0].agent",
            "agent =",
            "is not PROVIDER/TYPE",
        );
    }
}

#[test]
fn ocf_agent_must_exist_and_be_executable() {
    let text = edit(
        "agent = \"heartbeat/Dummy\"",
        "agent = \"heartbeat/IPaddr2\"",
    );
    assert_problem(
        &text,
        "application[0].resource[0].agent",
        "agent =",
        "resource.d/heartbeat/IPaddr2 cannot be used",
    );

    let dir = fixture();
    write_agent(&dir.path().join("ocf/resource.d/heartbeat/Dummy"), 0o644);
    let err = load_in(dir.path(), GOOD).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.key, "application[0].resource[0].agent");
    assert_eq!(p.line, Some(line(GOOD, "agent =")));
    assert!(p.message.contains("is not executable"), "{}", p.message);

    let text = edit("ocf_root = \"@OCF@\"", "ocf_root = \"ocf\"");
    assert_problem(
        &text,
        "application[0].resource[0].ocf_root",
        "ocf_root",
        "not an absolute path",
    );
}

#[test]
fn ocf_param_names_are_identifiers() {
    let text = edit(
        "fake_2 = \"x\"",
        "fake_2 = \"x\", \"2nd\" = \"y\", \"a-b\" = \"z\"",
    );
    for key in [
        "application[0].resource[0].params.2nd",
        "application[0].resource[0].params.a-b",
    ] {
        let p = problem(&text, key);
        assert_eq!(p.line, Some(line(&text, "params =")), "{key}");
        assert!(
            p.message.contains("cannot be passed as OCF_RESKEY_"),
            "{}",
            p.message
        );
    }
}

#[test]
fn vip_needs_address_with_prefix_and_interface() {
    let key = "application[0].resource[1].address";
    let text = edit("address = \"198.18.32.200/24\"\n", "");
    let p = problem(&text, key);
    assert_eq!(p.line, Some(nth_line(&text, "[[application.resource]]", 1)));
    assert!(p.message.contains("needs its address"), "{}", p.message);
    for (bad, says) in [
        ("198.18.32.200", "has no prefix length"),
        ("198.18.32.300/24", "not an IPv4 or IPv6 address"),
        ("198.18.32.200/33", "use 1 to 32"),
        ("2001:db8::10/129", "use 1 to 128"),
        ("224.0.0.1/24", "cannot be a virtual address"),
    ] {
        let text = edit("\"198.18.32.200/24\"", &format!("{bad:?}"));
        assert_problem(&text, key, bad, says);
    }
    load(&edit("\"198.18.32.200/24\"", "\"2001:db8::10/64\"")).unwrap();

    let text = edit("interface = \"eth0\"\n", "");
    let p = problem(&text, "application[0].resource[1].interface");
    assert_eq!(p.line, Some(nth_line(&text, "[[application.resource]]", 1)));
    assert!(p.message.contains("needs the interface"), "{}", p.message);
    let text = edit("interface = \"eth0\"", "interface = \"eth0:1\"");
    assert_problem(
        &text,
        "application[0].resource[1].interface",
        "eth0:1",
        "not an interface name",
    );
}

#[test]
fn vip_is_nobody_elses_address() {
    let text = edit("\"198.18.32.200/24\"", "\"198.18.32.2/24\"");
    assert_problem(
        &text,
        "application[0].resource[1].address",
        "198.18.32.2/24",
        "node g2's address on interconnect \"gic0\"",
    );
    let text = format!(
        "{GOOD}\n[[application]]\nname = \"db\"\nnodes = [\"g2\"]\n\n[[application.resource]]\n\
         name = \"ip\"\ntype = \"vip\"\naddress = \"198.18.32.200/32\"\ninterface = \"eth1\"\n"
    );
    let p = problem(&text, "application[1].resource[0].address");
    assert_eq!(p.line, Some(line(&text, "198.18.32.200/32")));
    assert!(
        p.message
            .contains("already brought up by application[0].resource[1]"),
        "{}",
        p.message
    );
}

#[test]
fn timeouts_and_interval_must_be_positive() {
    let text = edit(
        "check_interval_s = 5",
        "check_interval_s = 0\nstart_timeout_s = 0\nstop_timeout_s = 0\ncheck_timeout_s = 0",
    );
    for field in [
        "check_interval_s",
        "start_timeout_s",
        "stop_timeout_s",
        "check_timeout_s",
    ] {
        assert_problem(
            &text,
            &format!("application[0].resource[2].{field}"),
            &format!("{field} = 0"),
            "at least 1 second",
        );
    }
    load(&edit(
        "check_interval_s = 5",
        "check_interval_s = 5\nstart_timeout_s = 1",
    ))
    .unwrap();
}

#[test]
fn unknown_resource_key_is_a_parse_error_with_line() {
    let text = edit(
        "interface = \"eth0\"",
        "interface = \"eth0\"\nnetmask = \"24\"",
    );
    let err = load(&text).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.line, Some(line(&text, "netmask")));
    assert!(p.message.contains("unknown field"), "{}", p.message);
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
