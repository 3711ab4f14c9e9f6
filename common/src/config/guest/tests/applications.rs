//! Applications and their resources: names, restart limits, cmdline, OCF and VIP
//! resources and their timeouts.

use super::*;

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
