use super::*;

fn write_key(dir: &Path) -> PathBuf {
    let p = dir.join("cluster.key");
    keyfile::write_test_key(&p, b"0123456789abcdef0123456789abcdef");
    p
}

const GOOD: &str = r#"
[cluster]
name = "lab"
key_file = "cluster.key"

[heartbeat]
interval_ms = 200
suspect_after_ms = 500
dead_after_ms = 1000

[[interconnect]]
name = "ic0"

[[interconnect]]
name = "ic1"
port = 5406

[[host]]
name = "h1"
node_id = 1
addresses = { ic0 = "198.18.0.1", ic1 = "198.19.0.1" }

[[host]]
name = "h2"
node_id = 2
weight = 2
addresses = { ic0 = "198.18.0.2", ic1 = "198.19.0.2" }
"#;

fn load(text: &str) -> Result<LoadedConfig, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    ClusterConfig::load_str(&dir.path().join("cluster.toml"), text)
}

#[test]
fn good_config_loads_with_defaults_and_key() {
    let loaded = load(GOOD).unwrap();
    assert_eq!(loaded.config.hosts.len(), 2);
    assert_eq!(loaded.config.hosts[0].weight, 1);
    assert_eq!(loaded.config.interconnects[0].port, DEFAULT_HEARTBEAT_PORT);
    assert_eq!(loaded.config.kdump.port, DEFAULT_KDUMP_PORT);
    assert_eq!(loaded.key.len(), 32);
    assert!(loaded.config.two_node());
    assert!(loaded.config.wait_for_all());
}

#[test]
fn digest_changes_with_shared_settings() {
    let a = load(GOOD).unwrap().digest;
    let b = load(&GOOD.replace("dead_after_ms = 1000", "dead_after_ms = 1200"))
        .unwrap()
        .digest;
    assert_ne!(a, b);
}

#[test]
fn duplicate_node_id_names_key_and_line() {
    let text = GOOD.replace("node_id = 2", "node_id = 1");
    let err = load(&text).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.key, "host[1].node_id");
    let expected_line = text
        .lines()
        .position(|l| l.contains("node_id = 1"))
        .unwrap();
    // The second occurrence is the duplicate.
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("node_id = 1"))
        .nth(1)
        .unwrap()
        .0;
    assert_ne!(expected_line, second);
    assert_eq!(p.line, Some(second + 1));
    assert!(
        p.message.contains("already used by host[0] (h1)"),
        "{}",
        p.message
    );
    assert!(err.to_string().contains("cluster.toml:"), "{err}");
}

#[test]
fn missing_address_on_interconnect() {
    let text = GOOD.replace(
        r#"addresses = { ic0 = "198.18.0.2", ic1 = "198.19.0.2" }"#,
        r#"addresses = { ic0 = "198.18.0.2" }"#,
    );
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].key, "host[1].addresses");
    assert!(err.problems[0]
        .message
        .contains("no address on interconnect \"ic1\""));
}

#[test]
fn thresholds_out_of_order() {
    let text = GOOD.replace("dead_after_ms = 1000", "dead_after_ms = 400");
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems[0].key, "heartbeat.dead_after_ms");
    assert_eq!(err.problems[0].line, Some(9));
}

#[test]
fn kdump_probe_must_end_before_the_dead_time() {
    let ok = load(GOOD).unwrap();
    assert_eq!(ok.config.kdump.probe_ms, 150);
    let text = format!("{GOOD}\n[kdump]\nprobe_ms = 1000\n");
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems[0].key, "kdump.probe_ms");
    assert!(err.problems[0]
        .message
        .contains("less than heartbeat.dead_after_ms (1000 ms)"));
}

#[test]
fn unreadable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClusterConfig::load_str(&dir.path().join("c.toml"), GOOD).unwrap_err();
    assert_eq!(err.problems[0].key, "cluster.key_file");
    assert_eq!(err.problems[0].line, Some(4));
    assert!(err.problems[0]
        .message
        .contains("cannot read the cluster key"));
}

#[test]
fn key_open_to_others_is_refused_naming_file_mode_and_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ClusterConfig::load_str(&dir.path().join("c.toml"), GOOD).unwrap_err();
    let p = &err.problems[0];
    assert_eq!((p.key.as_str(), p.line), ("cluster.key_file", Some(4)));
    let file = key.display().to_string();
    assert!(p.message.contains(&file), "{}", p.message);
    assert!(p.message.contains("mode 0644"), "{}", p.message);
    assert!(
        p.message.contains(&format!("chmod 600 {file}")),
        "{}",
        p.message
    );
}

#[test]
fn guest_cluster_key_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    let guests = dir.path().join("guests.key");
    keyfile::write_test_key(&guests, b"fedcba9876543210fedcba9876543210");
    std::fs::set_permissions(&guests, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = GOOD.to_string()
        + "\n[[guest_cluster]]\nname = \"erp\"\nkey_file = \"guests.key\"\n\
         [[guest_cluster.member]]\nnode = \"db1\"\nnode_id = 1\ndomain = \"vm1\"\n";
    let err = ClusterConfig::load_str(&dir.path().join("cluster.toml"), &text).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    let p = &err.problems[0];
    assert_eq!(p.key, "guest_cluster[0].key_file", "{err}");
    assert!(p.message.contains("the guest cluster key"), "{}", p.message);
    assert!(p.message.contains("mode 0640"), "{}", p.message);
    assert!(
        p.message
            .contains(&format!("chmod 600 {}", guests.display())),
        "{}",
        p.message
    );
    assert!(matches!(
        read_key_file(&guests),
        Err(KeyFileError::OpenToOthers { mode: 0o640, .. })
    ));
}

#[test]
fn unknown_key_is_a_parse_error_with_line() {
    let text = GOOD.replace("interval_ms = 200", "intervall_ms = 200");
    let err = load(&text).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.line, Some(7));
    assert!(p.message.contains("unknown field"), "{}", p.message);
    assert_eq!(p.key, "intervall_ms");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("node_id = 2", "node_id = 0")
        .replace("weight = 2", "weight = 0")
        .replace("dead_after_ms = 1000", "dead_after_ms = 100");
    let err = load(&text).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"host[1].node_id"), "{keys:?}");
    assert!(keys.contains(&"host[1].weight"), "{keys:?}");
    assert!(keys.contains(&"heartbeat.dead_after_ms"), "{keys:?}");
    // Sorted by line.
    let lines: Vec<_> = err.problems.iter().map(|p| p.line.unwrap()).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn two_node_flag_needs_two_hosts() {
    let text = format!(
        "{GOOD}\n[[host]]\nname = \"h3\"\nnode_id = 3\naddresses = {{ ic0 = \"198.18.0.3\", ic1 = \"198.19.0.3\" }}\n\n[quorum]\ntwo_node = true\n"
    );
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems[0].key, "quorum.two_node");
}

const FENCED: &str = r#"
[[fence_device]]
name = "ipmi-h1"
kind = "agent"
agent = "fence_ipmilan"
params = { ip = "192.0.2.101", username = "admin", lanplus = "1" }
password_file = "ipmi.pass"

[[fence_device]]
name = "kdump"
kind = "kdump"
wait_ms = 5000
"#;

fn with_fencing(levels: &str) -> String {
    let hosts = GOOD.replace(
        "addresses = { ic0 = \"198.18.0.1\", ic1 = \"198.19.0.1\" }",
        &format!(
            "addresses = {{ ic0 = \"198.18.0.1\", ic1 = \"198.19.0.1\" }}\nfence_levels = {levels}"
        ),
    );
    format!("{hosts}\n{FENCED}")
}

#[test]
fn fencing_config_loads_and_resolves_password_file() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    std::fs::write(dir.path().join("ipmi.pass"), "secret\n").unwrap();
    let loaded = ClusterConfig::load_str(
        &dir.path().join("cluster.toml"),
        &with_fencing(r#"[["kdump"], ["ipmi-h1"]]"#),
    )
    .unwrap();
    let h1 = loaded.config.host("h1").unwrap();
    assert_eq!(
        h1.fence_levels,
        vec![vec!["kdump".to_string()], vec!["ipmi-h1".to_string()]]
    );
    let d = loaded.config.fence_device("ipmi-h1").unwrap();
    assert_eq!(
        d.password_file.as_deref(),
        Some(dir.path().join("ipmi.pass").as_path())
    );
    assert_eq!(d.timeout_ms, fencing::DEFAULT_FENCE_TIMEOUT_MS);
    assert_eq!(
        loaded.config.fencing.race_delay_ms,
        fencing::DEFAULT_RACE_DELAY_MS
    );
}

#[test]
fn fencing_problems_are_located() {
    let err = load(&with_fencing(r#"[["ipmi-h2"], []]"#)).unwrap_err();
    let msgs: Vec<String> = err
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert!(
        msgs.iter().any(
            |m| m.starts_with("host[0].fence_levels[0]: fence level 1 of h1 names \"ipmi-h2\"")
        ),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("host[0].fence_levels[1]: fence level 2 of h1 names no device")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("fence_device[0].password_file: cannot read")),
        "{msgs:?}"
    );
}

#[test]
fn addresses_must_name_one_host_and_interconnect() {
    let text = GOOD.replace(r#"ic1 = "198.19.0.2""#, r#"ic1 = "198.18.0.2""#);
    let err = load(&text).unwrap_err();
    assert!(
        err.problems[0]
            .message
            .contains("already an address of this host on another interconnect"),
        "{err}"
    );
    let text = GOOD.replace(
        "weight = 2",
        "weight = 2\nkdump_addresses = [\"198.18.0.1\"]",
    );
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems[0].key, "host[1].kdump_addresses[0]");
    assert!(err.problems[0].message.contains("ambiguous"), "{err}");
}

#[test]
fn host_link_and_guest_clusters_load_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    keyfile::write_test_key(
        &dir.path().join("guests.key"),
        b"fedcba9876543210fedcba9876543210\n",
    );
    let text = GOOD.replace(
        "weight = 2\n",
        "weight = 2\nlink_address = \"198.18.32.112\"\n",
    ) + "\n[[guest_cluster]]\nname = \"erp\"\nkey_file = \"guests.key\"\n"
        + "[[guest_cluster.member]]\nnode = \"db1\"\nnode_id = 1\ndomain = \"vm-db1\"\naddress = \"198.18.32.11\"\n";
    let loaded = ClusterConfig::load_str(&dir.path().join("cluster.toml"), &text).unwrap();
    let c = &loaded.config;
    assert_eq!(c.host_link.port, DEFAULT_HOST_LINK_PORT);
    assert_eq!(
        c.hosts[1].link_address,
        Some("198.18.32.112".parse().unwrap())
    );
    assert_eq!(c.guest_clusters[0].key_file, dir.path().join("guests.key"));
    assert_eq!(
        read_key_file(&c.guest_clusters[0].key_file).unwrap().len(),
        32
    );
    assert_eq!(c.guest_clusters[0].members[0].domain, "vm-db1");

    let bad = GOOD.replace("weight = 2\n", "weight = 2\nlink_address = \"0.0.0.0\"\n")
        + "\n[[guest_cluster]]\nname = \"erp\"\nkey_file = \"missing.key\"\n\n[[guest_cluster]]\nname = \"erp\"\nkey_file = \"guests.key\"\n";
    let errs = ClusterConfig::load_str(&dir.path().join("cluster.toml"), &bad).unwrap_err();
    let keys: Vec<(&str, Option<usize>)> = errs
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.line))
        .collect();
    assert!(keys.contains(&("host[1].link_address", Some(27))), "{errs}");
    assert!(
        keys.contains(&("guest_cluster[0].key_file", Some(32))),
        "{errs}"
    );
    assert!(
        keys.contains(&("guest_cluster[1].name", Some(35))),
        "{errs}"
    );
}

#[test]
fn hypervisor_uri_must_look_like_one() {
    let err = load(&format!("{GOOD}\n[hypervisor]\nuri = \"qemu\"\n")).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.key, "hypervisor.uri");
    assert!(p.message.contains("qemu:///system"), "{err}");
    let ok = load(&format!("{GOOD}\n[hypervisor]\nuri = \"qemu:///system\"\n")).unwrap();
    assert_eq!(ok.config.hypervisor.uri.as_deref(), Some("qemu:///system"));
}

#[test]
fn vm_ha_and_the_double_run_policy_load_and_are_checked() {
    let ok = load(&format!(
        "{GOOD}\n[hypervisor]\nuri = \"qemu:///system\"\ndouble_run = \"alarm\"\n\n\
         [vm_ha]\nvcpu_ratio = 2.5\n\n[[vm_ha.domain]]\nname = \"db1\"\npriority = 1\n\n\
         [[vm_ha.domain]]\nname = \"web1\"\n"
    ))
    .unwrap();
    let c = &ok.config;
    assert_eq!(c.hypervisor.double_run, DoubleRunPolicy::Alarm);
    assert_eq!(c.vm_ha.vcpu_ratio, 2.5);
    assert_eq!(c.vm_ha.retry_ms, 30_000);
    assert_eq!(
        (
            c.vm_ha.domains[1].name.as_str(),
            c.vm_ha.domains[1].priority
        ),
        ("web1", 100)
    );
    assert_eq!(
        load(GOOD).unwrap().config.hypervisor.double_run,
        DoubleRunPolicy::DestroyNewer
    );

    let err = load(&format!(
        "{GOOD}\n[vm_ha]\nvcpu_ratio = 0.0\n\n[[vm_ha.domain]]\nname = \"db1\"\n\n\
         [[vm_ha.domain]]\nname = \"db1\"\n"
    ))
    .unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"vm_ha.vcpu_ratio"), "{err}");
    assert!(
        keys.contains(&"vm_ha.domain"),
        "needs a hypervisor uri: {err}"
    );
    assert!(
        err.problems
            .iter()
            .any(|p| p.key == "vm_ha.domain[1].name" && p.message.contains("twice")),
        "{err}"
    );
    let bad = load(&format!(
        "{GOOD}\n[hypervisor]\ndouble_run = \"shoot-both\"\n"
    ))
    .unwrap_err();
    assert!(bad.to_string().contains("double_run"), "{bad}");
    let nmi = load(&format!("{GOOD}\n[hypervisor]\nkill_nmi_ms = 0\n")).unwrap_err();
    assert_eq!(nmi.problems[0].key, "hypervisor.kill_nmi_ms", "{nmi}");
    let ok = load(&format!("{GOOD}\n[hypervisor]\nkill_nmi_ms = 5000\n")).unwrap();
    assert_eq!(ok.config.hypervisor.kill_nmi_ms, Some(5000));
}

#[test]
fn host_side_applications_load_and_name_hosts() {
    let app = "\n[[application]]\nname = \"vm-db\"\nnodes = [\"h2\", \"h1\"]\n\n\
               [[application.resource]]\nname = \"guest\"\ntype = \"cmdline\"\n\
               start = \"hv-guest start db\"\nstop = \"hv-guest stop db\"\n\
               check = \"hv-guest check db\"\nflags = [\"ALLEXITCODES\"]\n";
    let ok = load(&format!("{GOOD}{app}")).unwrap();
    assert_eq!(ok.config.applications[0].nodes, ["h2", "h1"]);
    assert_ne!(
        ok.digest,
        load(GOOD).unwrap().digest,
        "every host must agree"
    );

    let err = load(&format!(
        "{GOOD}{}\n[[application.resource]]\nname = \"ip\"\ntype = \"vip\"\n\
         address = \"198.18.0.2/24\"\ninterface = \"eth0\"\n",
        app.replace("[\"h2\", \"h1\"]", "[\"h2\", \"vm1\"]")
    ))
    .unwrap_err();
    let found = |key: &str, words: &str| {
        err.problems
            .iter()
            .any(|p| p.key == key && p.message.contains(words))
    };
    assert!(
        found("application[0].nodes[1]", "no [[host]] named \"vm1\""),
        "{err}"
    );
    assert!(
        found("application[0].resource[1].address", "host h2's address"),
        "{err}"
    );
}

#[test]
fn migration_settings_have_defaults_and_are_checked() {
    let ok = load(GOOD).unwrap();
    let m = &ok.config.migration;
    assert_eq!(m.dest_uri, "qemu+ssh://{address}/system");
    assert_eq!(
        (m.max_downtime_ms, m.timeout_s, m.network.as_deref()),
        (300, 600, None)
    );
    let err = load(&format!(
        "{GOOD}\n[migration]\ndest_uri = \"h2\"\nnetwork = \"ic9\"\ntimeout_s = 0\n"
    ))
    .unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "migration.dest_uri",
            "migration.network",
            "migration.timeout_s"
        ],
        "{err}"
    );
}

#[test]
fn host_link_caps_have_defaults_and_are_checked() {
    let ok = load(GOOD).unwrap();
    let l = &ok.config.host_link;
    assert_eq!(
        (l.max_connections, l.max_per_source, l.register_timeout_ms),
        (256, 8, 10_000)
    );
    assert_eq!(l.admission().max_per_source, 8);
    let err = load(&format!(
        "{GOOD}\n[host_link]\nmax_connections = 4\nmax_per_source = 5\nregister_timeout_ms = 10\n"
    ))
    .unwrap_err();
    let found: Vec<(&str, &str)> = err
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{err}");
    assert_eq!(found[0].0, "host_link.max_per_source");
    assert!(found[0].1.contains("max_connections (4)"), "{err}");
    assert_eq!(found[1].0, "host_link.register_timeout_ms");
    let err = load(&format!(
        "{GOOD}\n[host_link]\nmax_connections = 0\nmax_per_source = 0\n"
    ))
    .unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["host_link.max_connections", "host_link.max_per_source"],
        "{err}"
    );
}

#[test]
fn guest_cluster_members_are_required_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    std::fs::write(
        dir.path().join("guests.key"),
        b"fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    let member = |node: &str, id: u32, domain: &str| {
        format!(
            "[[guest_cluster.member]]\nnode = \"{node}\"\nnode_id = {id}\ndomain = \"{domain}\"\n"
        )
    };
    let text = format!(
        "{GOOD}\n[[guest_cluster]]\nname = \"erp\"\nkey_file = \"guests.key\"\n{}{}{}\
         \n[[guest_cluster]]\nname = \"crm\"\nkey_file = \"guests.key\"\n{}\
         \n[[guest_cluster]]\nname = \"web\"\nkey_file = \"guests.key\"\n",
        member("db1", 1, "vm1"),
        member("db1", 1, "vm2"),
        member("x y", 0, "vm3"),
        member("crm1", 1, "vm1"),
    );
    let errs = ClusterConfig::load_str(&dir.path().join("cluster.toml"), &text).unwrap_err();
    let found: Vec<(String, String)> = errs
        .problems
        .iter()
        .map(|p| (p.key.clone(), p.message.clone()))
        .collect();
    let has = |key: &str, words: &str| found.iter().any(|(k, m)| k == key && m.contains(words));
    assert!(
        has("guest_cluster[0].member[1].node", "already member[0]"),
        "{errs}"
    );
    assert!(
        has(
            "guest_cluster[0].member[1].node_id",
            "already that of member[0]"
        ),
        "{errs}"
    );
    assert!(
        has("guest_cluster[0].member[2].node", "not a valid node name"),
        "{errs}"
    );
    assert!(
        has("guest_cluster[0].member[2].node_id", "at least 1"),
        "{errs}"
    );
    assert!(
        has(
            "guest_cluster[1].member[0].domain",
            "already that of guest_cluster[0].member[0]"
        ),
        "{errs}"
    );
    assert!(has("guest_cluster[2].name", "lists no member"), "{errs}");
    assert!(
        errs.problems.iter().all(|p| p.line.is_some()),
        "every problem has its line: {errs}"
    );
}

/// The default heartbeat port keeps clear of corosync's (5404 to 5406, often on the same
/// hosts) and of the agent's own other ports.
#[test]
fn the_default_heartbeat_port_is_clear_of_corosync_and_the_other_ports() {
    assert!(!(5404..=5406).contains(&DEFAULT_HEARTBEAT_PORT));
    assert_ne!(DEFAULT_HEARTBEAT_PORT, DEFAULT_KDUMP_PORT);
    assert_ne!(DEFAULT_HEARTBEAT_PORT, DEFAULT_HOST_LINK_PORT);
}
