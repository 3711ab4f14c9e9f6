use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvcluster_common::config::{DeviceKind, FenceDevice};

use super::*;

const FENCE_DUMMY: &str = "/usr/sbin/fence_dummy";

fn device(name: &str, agent: &Path) -> FenceDevice {
    FenceDevice {
        name: name.to_string(),
        kind: DeviceKind::Agent,
        agent: Some(agent.display().to_string()),
        params: BTreeMap::new(),
        password_file: None,
        timeout_ms: 5_000,
        retries: 0,
        wait_ms: 0,
    }
}

/// Writes an executable shell script. It is copied into place by `install` (another
/// process) so no file descriptor open for writing is ever inherited by a concurrent
/// fork in this test binary, which would make exec fail with ETXTBSY.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let src = dir.join(format!("{name}.src"));
    let dst = dir.join(name);
    std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
    let st = std::process::Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

/// A fake agent that reads its action from stdin and exits with `$off` or `$status`.
fn exit_agent(dir: &Path, off: i32, status: i32) -> PathBuf {
    let body = format!(
        "while IFS= read -r l; do case \"$l\" in action=*) a=${{l#action=}};; esac; done\n\
         echo \"$a\" >> {log}\n\
         case \"$a\" in off) echo 'Failed: off' >&2; exit {off};; status) exit {status};; *) exit 0;; esac",
        log = dir.join("actions").display()
    );
    script(dir, &format!("agent-{off}-{status}"), &body)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, val)| (k.to_string(), val.to_string()))
        .collect()
}

#[test]
fn stdin_lines_are_ordered_key_value_lines() {
    let mut d = device("ipmi-h3", Path::new("/bin/true"));
    d.params.insert("ip".into(), "10.0.0.3".into());
    d.params.insert("username".into(), "admin".into());
    let text = stdin_lines(&d, "off", &pairs(&[("plug", "h3")]), Some("s3cret")).unwrap();
    assert_eq!(
        text,
        "action=off\nip=10.0.0.3\nusername=admin\npassword=s3cret\nplug=h3\n"
    );
    let without = stdin_lines(&d, "status", &[], None).unwrap();
    assert_eq!(without, "action=status\nip=10.0.0.3\nusername=admin\n");
}

#[test]
fn stdin_lines_refuse_embedded_newlines() {
    let d = device("d", Path::new("/bin/true"));
    let err = stdin_lines(&d, "off", &pairs(&[("plug", "h3\naction=on")]), None).unwrap_err();
    assert!(err.contains("\"plug\""), "{err}");
    assert!(stdin_lines(&d, "off", &pairs(&[("a=b", "c")]), None).is_err());
    assert!(stdin_lines(&d, "off", &[], Some("x\ny")).is_err());
}

#[test]
fn describe_never_shows_passwords() {
    let mut d = device("ipmi-h3", Path::new("fence_ipmilan"));
    d.params.insert("ip".into(), "10.0.0.3".into());
    d.params.insert("password".into(), "hunter2".into());
    d.params.insert("snmp_priv_passwd".into(), "hunter3".into());
    d.password_file = Some("/etc/hvcluster/ipmi.pass".into());
    let text = describe(&d);
    assert!(!text.contains("hunter"), "{text}");
    assert!(
        text.contains("ip=10.0.0.3") && text.contains("/etc/hvcluster/ipmi.pass"),
        "{text}"
    );
}

#[test]
fn bare_names_are_found_in_sbin() {
    assert!(resolve_program("sh").unwrap().is_absolute());
    if Path::new(FENCE_DUMMY).exists() {
        assert!(resolve_program("fence_dummy")
            .unwrap()
            .ends_with("fence_dummy"));
    }
    assert!(resolve_program("no_such_fence_agent_x").is_err());
    assert!(resolve_program("bin/fence_x").is_err());
    assert_eq!(
        resolve_program("/opt/x/fence_y").unwrap(),
        PathBuf::from("/opt/x/fence_y")
    );
}

#[tokio::test]
async fn agent_receives_exactly_the_stdin_lines_and_no_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("stdin");
    let args = dir.path().join("args");
    let body = format!(
        "echo \"$#\" > {}\ncat > {}\necho Status: OFF\nexit 2",
        args.display(),
        dump.display()
    );
    let mut d = device("dumper", &script(dir.path(), "dumper", &body));
    d.params.insert("ip".into(), "192.0.2.7".into());
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret\nsecond line\n").unwrap();
    d.password_file = Some(pass);
    let extra = pairs(&[("plug", "h3")]);

    let o = run_agent(&d, "status", &extra).await;
    assert!(o.ok && o.exit == Some(2) && !o.timed_out, "{o:?}");
    assert_eq!(o.stdout_tail, "Status: OFF\n");
    let got = std::fs::read_to_string(&dump).unwrap();
    assert_eq!(
        got,
        stdin_lines(&d, "status", &extra, Some("s3cret")).unwrap()
    );
    assert_eq!(
        got,
        "action=status\nip=192.0.2.7\npassword=s3cret\nplug=h3\n"
    );
    assert_eq!(std::fs::read_to_string(&args).unwrap(), "0\n");
}

#[tokio::test]
async fn exit_codes_map_per_action() {
    let dir = tempfile::tempdir().unwrap();
    for (status, ok) in [(0, true), (2, true), (1, false)] {
        let d = device("d", &exit_agent(dir.path(), 0, status));
        let o = run_agent(&d, "status", &[]).await;
        assert_eq!((o.ok, o.exit), (ok, Some(status)), "{o:?}");
    }
    // For actions other than status, 2 is a failure.
    let d = device("d", &exit_agent(dir.path(), 2, 2));
    assert!(!run_agent(&d, "off", &[]).await.ok);
    assert!(run_agent(&d, "monitor", &[]).await.ok);

    let on = device("ipmi-h3", &exit_agent(dir.path(), 0, 0));
    let err = power_off_confirmed(&on, None).await.unwrap_err();
    assert_eq!(err, "ipmi-h3: reports the host still ON after off");
    let off = device("ipmi-h3", &exit_agent(dir.path(), 0, 2));
    assert!(power_off_confirmed(&off, None).await.is_ok());
    let broken = device("ipmi-h3", &exit_agent(dir.path(), 0, 1));
    let err = power_off_confirmed(&broken, None).await.unwrap_err();
    assert!(
        err.starts_with("ipmi-h3: status after off failed (exit 1)"),
        "{err}"
    );
    let failing = device("ipmi-h3", &exit_agent(dir.path(), 1, 2));
    let err = power_off_confirmed(&failing, None).await.unwrap_err();
    assert_eq!(err, "ipmi-h3: off failed (exit 1): Failed: off");
}

#[tokio::test]
async fn off_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let body = format!(
        "a=$(grep '^action=' | cut -d= -f2)\n\
         if [ \"$a\" = status ]; then exit 2; fi\n\
         echo x >> {c}\n\
         [ \"$(wc -l < {c})\" -ge 2 ] || {{ echo 'Failed: busy' >&2; exit 1; }}",
        c = count.display()
    );
    let mut d = device("flaky", &script(dir.path(), "flaky", &body));
    d.retries = 1;
    assert!(power_off_confirmed(&d, Some("h3")).await.is_ok());
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);

    std::fs::remove_file(&count).unwrap();
    d.retries = 0;
    let err = power_off_confirmed(&d, Some("h3")).await.unwrap_err();
    assert_eq!(err, "flaky: off failed (exit 1): Failed: busy");
}

fn is_gone(pid: i32) -> bool {
    // A killed process whose new parent (PID 1 here) does not reap stays a zombie:
    // that counts as gone, it runs nothing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $$ $! > {p}.tmp\nmv {p}.tmp {p}\necho started\nsleep 1000\n",
        p = pids.display()
    );
    let mut d = device("hung", &script(dir.path(), "hung", &body));
    d.timeout_ms = 700;
    let o = run_agent(&d, "off", &[]).await;
    assert!(o.timed_out && !o.ok && o.exit.is_none(), "{o:?}");
    assert!(o.elapsed < Duration::from_secs(5), "{o:?}");
    assert_eq!(o.stdout_tail, "started\n");
    assert!(o
        .summary(d.timeout_ms)
        .starts_with("(timed out after 700 ms)"));
    let text = std::fs::read_to_string(&pids).unwrap();
    let ids: Vec<i32> = text
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    for _ in 0..50 {
        if ids.iter().all(|&p| is_gone(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("agent or its grandchild survived the timeout: {ids:?}");
}

#[tokio::test]
async fn chatty_agents_do_not_block_and_tails_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let body = "cat >/dev/null\nhead -c 1000000 /dev/zero | tr '\\0' o\necho END\n\
                head -c 1000000 /dev/zero | tr '\\0' e >&2\necho ERR-END >&2";
    let d = device("chatty", &script(dir.path(), "chatty", body));
    let o = run_agent(&d, "monitor", &[]).await;
    assert!(o.ok, "{o:?}");
    assert!(o.stdout_tail.len() <= TAIL_BYTES && o.stdout_tail.ends_with("ooooEND\n"));
    assert!(o.stderr_tail.len() <= TAIL_BYTES && o.stderr_tail.ends_with("eeeeERR-END\n"));
}

#[tokio::test]
async fn unrunnable_devices_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = device("ghost", Path::new("no_such_fence_agent_x"));
    let o = run_agent(&d, "off", &[]).await;
    assert!(
        !o.ok && o.exit.is_none() && o.stderr_tail.contains("not found"),
        "{o:?}"
    );
    d.agent = Some(exit_agent(dir.path(), 0, 2).display().to_string());
    d.password_file = Some(dir.path().join("missing.pass"));
    let err = power_off_confirmed(&d, None).await.unwrap_err();
    assert!(
        err.starts_with("ghost: off failed (did not run)") && err.contains("password file"),
        "{err}"
    );
}

#[tokio::test]
async fn a_level_needs_every_device_and_runs_them_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let slow_ok = script(
        dir.path(),
        "slow-ok",
        "a=$(grep '^action=')\nsleep 0.6\n[ \"$a\" = action=status ] && exit 2\nexit 0",
    );
    let slow_fail = script(
        dir.path(),
        "slow-fail",
        "cat >/dev/null\nsleep 0.6\necho 'Failed: no route to BMC' >&2\nexit 1",
    );
    let a = device("pdu-a", &slow_ok);
    let b = device("pdu-b", &slow_ok);
    let started = std::time::Instant::now();
    let (ok, detail) = run_level(&[a.clone(), b], Some("h3")).await;
    // Two devices, each off + status of 0.6 s: sequential would take 2.4 s.
    assert!(
        ok && started.elapsed() < Duration::from_millis(2000),
        "{detail}"
    );
    assert!(
        detail.contains("pdu-a: off, confirmed OFF")
            && detail.contains("pdu-b: off, confirmed OFF"),
        "{detail}"
    );

    let (ok, detail) = run_level(&[a, device("pdu-b", &slow_fail)], Some("h3")).await;
    assert!(!ok);
    assert!(detail.contains("pdu-a: off, confirmed OFF"), "{detail}");
    assert!(
        detail.contains("pdu-b: off failed (exit 1): Failed: no route to BMC"),
        "{detail}"
    );
    assert!(!run_level(&[], None).await.0);
}

fn dummy(name: &str, params: &[(&str, &str)]) -> Option<FenceDevice> {
    if !Path::new(FENCE_DUMMY).exists() {
        eprintln!("{FENCE_DUMMY} is not installed; skipped");
        return None;
    }
    let mut d = device(name, Path::new("fence_dummy"));
    d.timeout_ms = 30_000;
    d.params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(d)
}

#[tokio::test]
async fn fence_dummy_file_type_powers_off_and_reports_off() {
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("power");
    std::fs::write(&status_file, "on").unwrap();
    let sf = status_file.display().to_string();
    let Some(d) = dummy("dummy-ok", &[("type", "file"), ("status_file", &sf)]) else {
        return;
    };
    assert!(monitor(&d).await.ok);
    let on = run_agent(&d, "status", &[]).await;
    assert_eq!((on.ok, on.exit), (true, Some(0)), "{on:?}");
    let took = power_off_confirmed(&d, None).await;
    assert!(took.is_ok(), "{took:?}");
    assert_eq!(std::fs::read_to_string(&status_file).unwrap(), "off");
    let off = run_agent(&d, "status", &[]).await;
    assert_eq!(off.exit, Some(2), "{off:?}");
    assert!(run_level(&[d], None).await.0);
}

#[tokio::test]
async fn fence_dummy_fail_type_fails_off() {
    // type=fail never reaches OFF; power_timeout=1 makes it give up after 1 s, not 20.
    let Some(d) = dummy("dummy-fail", &[("type", "fail"), ("power_timeout", "1")]) else {
        return;
    };
    let err = power_off_confirmed(&d, None).await.unwrap_err();
    assert!(
        err.starts_with("dummy-fail: off failed (exit 1): "),
        "{err}"
    );
    assert!(err.contains("Timed out waiting to power OFF"), "{err}");
    let status = run_agent(&d, "status", &[]).await;
    assert_eq!(status.exit, Some(0), "type=fail reports ON: {status:?}");
}

#[tokio::test]
async fn helpers_left_holding_the_pipes_are_killed_and_the_exit_code_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let body = format!(
        "cat >/dev/null\nsleep 1000 &\necho $! > {p}.tmp\nmv {p}.tmp {p}\nexit 0",
        p = pid.display()
    );
    let mut d = device("leaky", &script(dir.path(), "leaky", &body));
    d.timeout_ms = 700;
    let o = run_agent(&d, "off", &[]).await;
    assert!(o.ok && o.exit == Some(0) && !o.timed_out, "{o:?}");
    assert!(
        o.stderr_tail
            .contains("helpers it left running were killed"),
        "{o:?}"
    );
    let helper: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..50 {
        if is_gone(helper) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("helper {helper} survived");
}

#[test]
fn a_fence_agent_started_by_the_realtime_agent_runs_at_normal_priority() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (real-time scheduling)"
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = script(dir.path(), "fence_policy", "cat > /dev/null\nchrt -p $$");
    let device = device("policy", &agent);
    // On a thread of its own, as the agent's main thread: the harness's threads keep
    // their class.
    let outcome = std::thread::spawn(move || {
        let cfg = hvcluster_common::config::WatchdogSection {
            realtime_priority: 10,
            lock_memory: false,
            ..Default::default()
        };
        assert!(crate::process::prepare(&cfg).realtime);
        let runtime = crate::daemon::runtime("hvt-fence-sched").unwrap();
        runtime.block_on(async move {
            // Started from a worker thread, as the agent does.
            tokio::spawn(async move { run_agent(&device, "status", &[]).await })
                .await
                .unwrap()
        })
    })
    .join()
    .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert!(
        outcome.stdout_tail.contains("policy: SCHED_OTHER"),
        "fence agent: {}",
        outcome.stdout_tail
    );
}
