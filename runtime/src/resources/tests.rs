//! Resource runners against real programs: `/bin/sh` scripts and the OCF `Dummy`
//! agent of the resource-agents package.

use std::path::Path;
use std::time::{Duration, Instant};

use hvcluster_common::application::outcome::{OfflineReason, OpKind, OpOutcome, ResourceState};
use hvcluster_common::config::guest::{CmdlineFlag, ResourceConfig, ResourceKind};

use super::ocf::{parse_duration_s, MetaDefaults};
use super::vip::{addresses, parse_address, presence_from, Presence};
use super::{run, OpRequest};

const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

/// Resource `r1` of `kind`, with nothing configured.
pub(crate) fn resource(kind: ResourceKind) -> ResourceConfig {
    ResourceConfig {
        name: "r1".into(),
        kind,
        start: None,
        stop: None,
        check: None,
        flags: Vec::new(),
        agent: None,
        ocf_root: None,
        params: Default::default(),
        address: None,
        interface: None,
        start_timeout_s: None,
        stop_timeout_s: None,
        check_timeout_s: None,
        check_interval_s: None,
    }
}

/// A Cmdline resource running these scripts.
pub(crate) fn cmdline(start: &str, stop: &str, check: &str) -> ResourceConfig {
    ResourceConfig {
        start: Some(start.into()),
        stop: Some(stop.into()),
        check: Some(check.into()),
        ..resource(ResourceKind::Cmdline)
    }
}

/// Operation `kind` on `resource`, for application app1 on g1.
pub(crate) fn request(resource: &ResourceConfig, kind: OpKind) -> OpRequest {
    OpRequest {
        app: "app1".into(),
        node: "g1".into(),
        resource: resource.clone(),
        kind,
        reason: None,
        auto_recover: false,
        forced: false,
        env: Vec::new(),
    }
}

async fn op(resource: &ResourceConfig, kind: OpKind) -> OpOutcome {
    run(request(resource, kind)).await
}

#[tokio::test]
async fn cmdline_start_check_stop_follow_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("on");
    let m = m.display();
    let r = cmdline(
        &format!("touch {m}"),
        &format!("rm -f {m}"),
        &format!("test -e {m}"),
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    assert_eq!(
        op(&r, OpKind::Start).await,
        OpOutcome::Done(ResourceState::Online)
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Online)
    );
    assert_eq!(
        op(&r, OpKind::Stop).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Offline)
    );
}

/// Check exit codes 0 to 6 each name their state with ALLEXITCODES, through a real
/// shell; without the flag only 0 is Online.
#[tokio::test]
async fn cmdline_all_exit_codes_through_a_real_check() {
    let named = [
        ResourceState::Online,
        ResourceState::Offline,
        ResourceState::Faulted,
        ResourceState::Unknown,
        ResourceState::Standby,
        ResourceState::OnlineWarning,
        ResourceState::OfflineFaulted,
    ];
    for (code, state) in named.into_iter().enumerate() {
        let mut r = cmdline("true", "true", &format!("exit {code}"));
        assert_eq!(
            op(&r, OpKind::Check).await,
            OpOutcome::Done(if code == 0 {
                ResourceState::Online
            } else {
                ResourceState::Offline
            })
        );
        r.flags = vec![CmdlineFlag::AllExitCodes];
        assert_eq!(
            op(&r, OpKind::Check).await,
            OpOutcome::Done(state),
            "exit {code}"
        );
    }
}

#[tokio::test]
async fn cmdline_scripts_see_the_contract_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let dump = format!(
        "echo \"$HV_APPLICATION $HV_NODENAME $HV_SCRIPT_TYPE ${{HV_OFFLINE_REASON:-none}} $HV_AUTORECOVER\" >> {}",
        out.display()
    );
    let r = cmdline(&dump, &dump, &dump);
    let mut stop = request(&r, OpKind::Stop);
    stop.reason = Some(OfflineReason::Switch);
    assert_eq!(run(stop).await, OpOutcome::Done(ResourceState::Offline));
    let mut start = request(&r, OpKind::Start);
    start.auto_recover = true;
    start.reason = Some(OfflineReason::Fault);
    assert_eq!(run(start).await, OpOutcome::Done(ResourceState::Online));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text, "app1 g1 STOP SWITCH 0\napp1 g1 START none 1\n",
        "the offline reason is given to stops only"
    );
}

#[tokio::test]
async fn host_side_operations_get_the_agents_extra_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let dump = format!(
        "echo \"${{HV_GUEST_URI:-unset}} $HV_APPLICATION\" >> {}",
        out.display()
    );
    let r = cmdline(&dump, &dump, &dump);
    let mut start = request(&r, OpKind::Start);
    start.env = vec![("HV_GUEST_URI".into(), "test:///default".into())];
    assert_eq!(run(start).await, OpOutcome::Done(ResourceState::Online));
    assert_eq!(
        run(request(&r, OpKind::Stop)).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "test:///default app1\nunset app1\n");
}

#[tokio::test]
async fn cmdline_failures_name_the_exit_code_and_last_line() {
    let r = cmdline(
        "echo starting; echo 'no such volume' >&2; exit 3",
        "true",
        "true",
    );
    match op(&r, OpKind::Start).await {
        OpOutcome::Failed { code, detail } => {
            assert_eq!(code, Some(3));
            assert!(
                detail.contains("app1/r1 start failed (exit 3): no such volume"),
                "{detail}"
            );
        }
        other => panic!("start should fail, got {other:?}"),
    }
}

/// A start past its timeout is killed with everything it left behind.
#[tokio::test]
async fn cmdline_timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let mut r = cmdline(
        &format!("(sleep 3; touch {}) & sleep 60", late.display()),
        "true",
        "true",
    );
    r.start_timeout_s = Some(1);
    let t = Instant::now();
    assert_eq!(op(&r, OpKind::Start).await, OpOutcome::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !late.exists(),
        "the background helper of a timed-out start was left running"
    );
}

fn dummy(state: &Path) -> ResourceConfig {
    let mut r = resource(ResourceKind::Ocf);
    r.agent = Some("heartbeat/Dummy".into());
    r.params.insert("state".into(), state.display().to_string());
    r
}

#[tokio::test]
async fn ocf_dummy_runs_through_start_monitor_stop() {
    assert!(
        Path::new(DUMMY).exists(),
        "{DUMMY} is missing: install resource-agents"
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dummy.state");
    let r = dummy(&state);
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    assert_eq!(
        op(&r, OpKind::Start).await,
        OpOutcome::Done(ResourceState::Online)
    );
    assert!(
        state.exists(),
        "Dummy keeps its state in the file given as OCF_RESKEY_state"
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Online)
    );
    assert_eq!(
        op(&r, OpKind::Stop).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    assert_eq!(
        op(&r, OpKind::Stop).await,
        OpOutcome::Done(ResourceState::Offline),
        "stop is idempotent"
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Offline)
    );
}

#[tokio::test]
async fn ocf_missing_agent_fails_with_its_path() {
    let mut r = resource(ResourceKind::Ocf);
    r.agent = Some("heartbeat/NoSuchAgent".into());
    match op(&r, OpKind::Start).await {
        OpOutcome::Failed { code: None, detail } => {
            assert!(
                detail.contains("resource.d/heartbeat/NoSuchAgent"),
                "{detail}"
            )
        }
        other => panic!("got {other:?}"),
    }
}

#[tokio::test]
async fn ocf_defaults_come_from_the_agents_meta_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = dummy(&dir.path().join("s"));
    r.stop_timeout_s = Some(7);
    super::ocf::fill_defaults(&mut r).await.unwrap();
    assert_eq!(r.start_timeout_s, Some(20));
    assert_eq!(r.stop_timeout_s, Some(7), "configured values win");
    assert_eq!(r.check_timeout_s, Some(20));
    assert_eq!(r.check_interval_s, Some(10));
}

#[test]
fn meta_data_actions_and_durations_parse() {
    let xml = r#"<?xml version="1.0"?><resource-agent name="x"><actions>
        <action name="start" timeout="2min"/><action name="stop" timeout="90"/>
        <action name="monitor" timeout="30s" interval="0"/>
        <action name="monitor" role="Promoted" timeout="5s" interval="7s"/>
        </actions></resource-agent>"#;
    assert_eq!(
        MetaDefaults::parse(xml).unwrap(),
        MetaDefaults {
            start_timeout_s: Some(120),
            stop_timeout_s: Some(90),
            monitor_timeout_s: Some(30),
            monitor_interval_s: None,
        }
    );
    assert!(MetaDefaults::parse("<actions").is_err());
    assert_eq!(parse_duration_s("1500ms"), Some(2));
    assert_eq!(parse_duration_s("1h"), Some(3600));
    assert_eq!(parse_duration_s("soon"), None);
}

#[test]
fn vip_addresses_parse_and_are_found_in_ip_output() {
    assert_eq!(
        parse_address("198.18.32.200/24").unwrap(),
        ("198.18.32.200".parse().unwrap(), 24)
    );
    assert!(parse_address("198.18.32.200")
        .unwrap_err()
        .contains("no /PREFIX"));
    assert!(parse_address("198.18.32.200/33")
        .unwrap_err()
        .contains("0 to 32"));
    assert!(parse_address("fd00::5/64").is_ok());
    let json = r#"[{"ifname":"eth0","addr_info":[{"family":"inet","local":"198.18.32.11","prefixlen":24},
        {"family":"inet","local":"198.18.32.200","prefixlen":24}]}]"#;
    let found = addresses(json).unwrap();
    assert!(found.contains(&"198.18.32.200".parse().unwrap()));
    assert_eq!(found.len(), 2);
    assert!(addresses("garbage").is_err());
    assert_eq!(addresses("[]").unwrap(), Vec::<std::net::IpAddr>::new());
}

/// What ip said, side by side with what the check concludes: an answer cut short or
/// not JSON (e.g. the last bytes of a long one) is no answer, never "absent".
#[test]
fn vip_presence_from_ips_answer() {
    let vip: std::net::IpAddr = "198.18.32.200".parse().unwrap();
    let on = r#"[{"ifname":"eth0","addr_info":[{},{"family":"inet","local":"198.18.32.200","prefixlen":24}]}]"#;
    let tail = r#""local":"198.18.32.200","prefixlen":24}]}]"#;
    // exit code, output, cut short, what the check concludes
    type Row<'a> = (Option<i32>, &'a str, bool, Result<Presence, &'a str>);
    let table: [Row; 7] = [
        (Some(0), on, false, Ok(Presence::Up)),
        (Some(0), "[]", false, Ok(Presence::Absent)),
        (
            Some(0),
            r#"[{"ifname":"eth0","addr_info":[]}]"#,
            false,
            Ok(Presence::Absent),
        ),
        (Some(1), "", false, Ok(Presence::NoInterface)),
        (Some(0), on, true, Err("over 1048576 bytes")),
        (Some(0), tail, false, Err("not what was expected")),
        (Some(0), "", false, Err("not what was expected")),
    ];
    for (exit, json, cut, want) in table {
        let got = presence_from(exit, json, cut, vip, "eth0");
        match (&got, want) {
            (Ok(p), Ok(w)) => assert_eq!(*p, w, "{json}"),
            (Err(e), Err(w)) => assert!(e.contains(w) && e.contains("eth0"), "{e}"),
            _ => panic!("{exit:?} {json:?} {cut}: got {got:?}, want {want:?}"),
        }
    }
}

/// A start that launches a daemon returns as soon as the script exits, and the daemon
/// keeps running (it is the resource); its later output is not waited for.
#[tokio::test]
async fn cmdline_start_may_leave_a_daemon_running() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("daemon.pid");
    let p = pid.display();
    let mut r = cmdline(
        &format!("sh -c 'echo daemon up; exec sleep 30' & echo $! > {p}"),
        &format!("kill $(cat {p})"),
        // Running, and not a zombie waiting to be reaped.
        &format!("st=$(cut -d' ' -f3 /proc/$(cat {p})/stat 2>/dev/null); [ -n \"$st\" ] && [ \"$st\" != Z ]"),
    );
    r.start_timeout_s = Some(20);
    let t = Instant::now();
    assert_eq!(
        op(&r, OpKind::Start).await,
        OpOutcome::Done(ResourceState::Online)
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "start waited for the daemon: {:?}",
        t.elapsed()
    );
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Online),
        "the daemon still runs"
    );
    assert_eq!(
        op(&r, OpKind::Stop).await,
        OpOutcome::Done(ResourceState::Offline)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        op(&r, OpKind::Check).await,
        OpOutcome::Done(ResourceState::Offline)
    );
}
