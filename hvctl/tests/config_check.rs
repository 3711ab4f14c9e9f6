//! `hvctl config check` as an operator runs it: exit status and located messages.

use std::process::Command;

const GOOD: &str = r#"[cluster]
name = "prod"
key_file = "cluster.key"

[[interconnect]]
name = "ic0"

[[host]]
name = "hv1"
node_id = 1
addresses = { ic0 = "192.0.2.1" }

[[host]]
name = "hv2"
node_id = 2
addresses = { ic0 = "192.0.2.2" }
"#;

fn check(text: &str, with_key: bool, json: bool) -> (i32, String, String) {
    check_with_key_mode(text, with_key.then_some(0o600), json)
}

/// Checks `text` with a `cluster.key` of permission bits `key_mode` (none: no key).
fn check_with_key_mode(text: &str, key_mode: Option<u32>, json: bool) -> (i32, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    if let Some(mode) = key_mode {
        let key = dir.path().join("cluster.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let file = dir.path().join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvctl"));
    cmd.args(["config", "check"]).arg(&file);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_file_is_summarised() {
    let (code, out, _) = check(GOOD, true, false);
    assert_eq!(code, 0);
    assert!(
        out.contains("valid: cluster \"prod\", 2 host(s), 1 interconnect(s)"),
        "{out}"
    );
}

#[test]
fn every_problem_is_listed_with_file_line_and_key() {
    let bad = GOOD.replace("node_id = 2", "node_id = 1").replace(
        "addresses = { ic0 = \"192.0.2.2\" }",
        "addresses = { ic9 = \"192.0.2.2\" }",
    );
    let (code, _, err) = check(&bad, false, false);
    assert_eq!(code, 1);
    assert!(
        err.contains("cluster.toml:3: cluster.key_file: cannot read the cluster key"),
        "{err}"
    );
    assert!(
        err.contains(
            "cluster.toml:15: host[1].node_id: node id 1 is already used by host[0] (hv1)"
        ),
        "{err}"
    );
    assert!(
        err.contains("host[1].addresses.ic9: there is no [[interconnect]] named \"ic9\""),
        "{err}"
    );
    assert!(
        err.contains("host[1].addresses: host hv2 has no address on interconnect \"ic0\""),
        "{err}"
    );
    assert!(err.contains("4 problem(s) found"), "{err}");
}

#[test]
fn json_output_for_scripts() {
    let (code, out, _) = check(
        &GOOD.replace("name = \"prod\"", "name = \"prod\"\nbogus = 1"),
        true,
        true,
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 3);
    assert!(v["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `bogus`"));
}

#[test]
fn a_missing_socket_says_what_to_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .args(["--socket", "/nonexistent/hostd.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the agent at /nonexistent/hostd.sock (is hv-hostd running"),
        "{err}"
    );
}

#[test]
fn a_key_open_to_others_is_refused_with_its_mode_and_the_fix() {
    let (code, _, err) = check_with_key_mode(GOOD, Some(0o644), false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cluster.toml:3: cluster.key_file: the cluster key "),
        "{err}"
    );
    assert!(err.contains("cluster.key has mode 0644"), "{err}");
    assert!(err.contains("chmod 600 "), "{err}");
}

/// A guest.toml (`[[node]]` tables) is checked as one, with the guest cluster's rules.
#[test]
fn a_guest_toml_is_checked_as_a_guest_cluster() {
    let guest = r#"[cluster]
name = "web-guests"
key_file = "cluster.key"

[[interconnect]]
name = "gic0"

[[node]]
name = "db1"
node_id = 1
addresses = { gic0 = "192.0.2.31" }

[[node]]
name = "db2"
node_id = 2
addresses = { gic0 = "192.0.2.32" }
"#;
    let (code, out, err) = check(guest, true, false);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("valid: guest cluster \"web-guests\", 2 node(s), 1 interconnect(s)"),
        "{out}"
    );
    let broken = guest.replace("node_id = 2", "node_id = 1");
    let (code, _, err) = check(&broken, true, false);
    assert_eq!(code, 1);
    assert!(err.contains("node_id"), "{err}");
}
