//! Real-time scheduling stays with the agent (needs root): its threads run SCHED_FIFO,
//! and what they start (resource scripts, the daemons those leave) runs SCHED_OTHER.
//! The host agent's fence runner has the same test for the fence agents it starts.

use hvcluster_common::application::outcome::{OpKind, OpOutcome, ResourceState};
use hvcluster_common::config::WatchdogSection;

use super::*;
use crate::resources::tests::{cmdline, request};

fn policy_of(pid: libc::pid_t) -> libc::c_int {
    // SAFETY: plain syscall wrapper; an unknown pid only makes it fail with -1.
    unsafe { libc::sched_getscheduler(pid) }
}

#[test]
fn the_agents_threads_are_realtime_and_what_they_start_is_not() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (real-time scheduling)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // On a thread of its own, as the agent's main thread: the harness's threads keep
    // their class.
    let (main, worker, blocking, watchdog_like, start) = std::thread::scope(|s| {
        s.spawn(|| {
            let cfg = WatchdogSection {
                realtime_priority: 10,
                lock_memory: false,
                ..WatchdogSection::default()
            };
            assert!(prepare(&cfg).realtime);
            let main = policy_of(0);
            let watchdog_like = std::thread::spawn(|| {
                enter_agent_thread();
                policy_of(0)
            })
            .join()
            .unwrap();
            let runtime = crate::daemon::runtime("hvt-sched").unwrap();
            let script = format!(
                "chrt -p $$ > {d}/script.policy; \
                 sleep 60 > /dev/null 2>&1 & echo $! > {d}/daemon.pid"
            );
            let (worker, blocking, start) = runtime.block_on(async move {
                let worker = tokio::spawn(async { policy_of(0) }).await.unwrap();
                let blocking = tokio::task::spawn_blocking(|| policy_of(0)).await.unwrap();
                // Started from a worker thread, as the agent does.
                let start = tokio::spawn(crate::resources::run(request(
                    &cmdline(&script, "true", "true"),
                    OpKind::Start,
                )))
                .await
                .unwrap();
                (worker, blocking, start)
            });
            (main, worker, blocking, watchdog_like, start)
        })
        .join()
        .unwrap()
    });
    let daemon: libc::pid_t = std::fs::read_to_string(dir.path().join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon_policy = policy_of(daemon);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    );

    assert_eq!(main, REALTIME_POLICY, "the agent's main thread");
    assert_eq!(worker, REALTIME_POLICY, "a worker thread");
    assert_eq!(blocking, REALTIME_POLICY, "a blocking-pool thread");
    assert_eq!(watchdog_like, REALTIME_POLICY, "a thread the agent starts");
    assert_eq!(start, OpOutcome::Done(ResourceState::Online));
    let script = std::fs::read_to_string(dir.path().join("script.policy")).unwrap();
    assert!(
        script.contains("policy: SCHED_OTHER"),
        "resource script: {script}"
    );
    assert_eq!(
        daemon_policy,
        libc::SCHED_OTHER,
        "the daemon the script left"
    );
}
