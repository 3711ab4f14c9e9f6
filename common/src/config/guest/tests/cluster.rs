//! The cluster's own sections: name, key file, heartbeat timings, interconnects, nodes
//! and the link to the host.

use super::*;

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
