//! The virtual-IP check against a real interface, in a network namespace of the test's
//! own (needs root): an interface with hundreds of addresses still has its VIP.

use std::process::{Command, Stdio};

use hvcluster_common::application::outcome::{OpKind, OpOutcome, ResourceState};
use hvcluster_common::config::guest::{ResourceConfig, ResourceKind};

use super::run;
use super::tests::{request, resource};

/// A network namespace created for one test, deleted when dropped.
struct TestNetns(String);

impl TestNetns {
    fn new(tag: &str) -> TestNetns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (it creates a network namespace)"
        );
        let ns = TestNetns(format!("hvt-{tag}-{}", std::process::id()));
        ns.ip(&["netns", "add", &ns.0]);
        ns
    }

    /// Runs `ip ARGS` and requires success.
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `ip -n NS -batch -` with `lines` on its stdin.
    fn batch(&self, lines: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", &self.0, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "ip -batch failed");
    }

    /// Runs `f` on a thread inside the namespace: the programs it starts are there too.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn vip(address: &str, interface: &str) -> ResourceConfig {
    ResourceConfig {
        name: "vip".into(),
        address: Some(address.into()),
        interface: Some(interface.into()),
        ..resource(ResourceKind::Vip)
    }
}

fn op(resource: &ResourceConfig, kind: OpKind) -> OpOutcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(request(resource, kind)))
}

#[test]
fn vip_on_an_interface_with_hundreds_of_addresses_is_found() {
    let ns = TestNetns::new("vip");
    ns.ip(&[
        "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    ns.ip(&["-n", &ns.0, "link", "set", "v0", "up"]);
    // 400 addresses: `ip -j addr show dev v0` is about 70 KiB.
    let lines: String = (0..400)
        .map(|i| {
            format!(
                "addr add 198.18.{}.{}/22 dev v0\n",
                200 + i / 200,
                1 + i % 200
            )
        })
        .collect();
    ns.batch(&lines);
    let (first, middle, last, absent, gone, stopped) = ns.enter(|| {
        (
            op(&vip("198.18.200.1/22", "v0"), OpKind::Check),
            op(&vip("198.18.200.150/22", "v0"), OpKind::Check),
            op(&vip("198.18.201.200/22", "v0"), OpKind::Check),
            op(&vip("198.18.203.9/22", "v0"), OpKind::Check),
            op(&vip("198.18.200.1/22", "nope0"), OpKind::Check),
            {
                let r = vip("198.18.200.150/22", "v0");
                let stop = op(&r, OpKind::Stop);
                (stop, op(&r, OpKind::Check))
            },
        )
    });
    let online = OpOutcome::Done(ResourceState::Online);
    assert_eq!(first, online);
    assert_eq!(middle, online);
    assert_eq!(last, online);
    assert_eq!(absent, OpOutcome::Done(ResourceState::Offline));
    assert_eq!(gone, OpOutcome::Done(ResourceState::Faulted));
    assert_eq!(
        stopped,
        (
            OpOutcome::Done(ResourceState::Offline),
            OpOutcome::Done(ResourceState::Offline)
        )
    );
}
