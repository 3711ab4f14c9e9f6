//! Each lab host's hypervisor: a `libvirtd` of its own, started inside the host's
//! namespace and cgroup (so a power loss takes it and its domains down), serving
//! libvirt's `test` driver on a socket of its own. Agents, `hv-guest` and `virsh` reach
//! it at [`LabCluster::libvirt_uri`], so every client sees the same domains. The test
//! driver forgets its domains when its last client disconnects, so the lab keeps one
//! connection to each host's libvirtd open for as long as that libvirtd runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hvcluster_host_agent::hypervisor::{self, Libvirt};

use crate::cluster::{tail, LabCluster};

/// Memory of a lab domain unless `[cluster.domain_memory_mib]` says otherwise.
pub const DEFAULT_DOMAIN_MIB: u64 = 512;

/// The `[hypervisor] uri` of a lab's cluster.toml (`{host}` for each host's name): the
/// test driver, or with VM guests the QEMU driver, of each host's libvirtd.
pub fn uri_template(run_dir: &std::path::Path, vms: bool) -> String {
    let driver = if vms {
        "qemu:///system"
    } else {
        "test+unix:///default"
    };
    format!(
        "{driver}?socket={}/{{host}}/libvirt/run/libvirt-sock",
        run_dir.display()
    )
}

/// libvirtd's configuration for a real-tier host (lab only: no authentication).
const LIBVIRTD_CONF: &str = "unix_sock_group = \"root\"\nunix_sock_rw_perms = \"0700\"\n\
auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlisten_tls = 0\nlisten_tcp = 0\n";

/// The QEMU driver's configuration for a real-tier host: QEMU as root, no cgroups of its
/// own (so it stays in the host's cgroup: a power loss takes it too), no namespaces.
const QEMU_CONF: &str = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
remember_owner = 0\nsecurity_driver = \"none\"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n\
stdio_handler = \"file\"\n";

impl LabCluster {
    fn libvirt_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("libvirt")
    }

    /// The libvirt URI of `host`'s hypervisor (`{host}` in place of the name gives the
    /// URI template of the cluster configuration).
    pub fn libvirt_uri(&self, host: &str) -> String {
        uri_template(&self.dir, self.spec.has_vms()).replace("{host}", host)
    }

    /// Starts `host`'s libvirtd unless it runs, and gives it its domains: at the first
    /// boot those of `[cluster.domains]` run and those of `[cluster.defined]` are defined;
    /// after a power loss every one of them is defined and none runs (the host rebooted).
    pub(crate) fn ensure_hypervisor(&mut self, host: &str) -> anyhow::Result<()> {
        if !self.spec.has_hypervisors() {
            return Ok(());
        }
        let uri = self.libvirt_uri(host);
        if let Some((_, held)) = self.hypervisors.get(host) {
            if held.list().is_ok() {
                return Ok(());
            }
        }
        if let Some((mut old, _)) = self.hypervisors.remove(host) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let dir = self.libvirt_dir(host);
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["run", "etc", "lib", "cache", "log", "drivers"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let vms = self.spec.has_vms();
        let mut conf = LIBVIRTD_CONF.to_string();
        if vms {
            // Each host its own identity (migration between them needs distinct ones).
            let uuid = hypervisor::uuid_of(&format!("{}-{host}", self.lab.id()));
            conf.push_str(&format!("host_uuid = \"{uuid}\"\n"));
            std::fs::write(dir.join("etc/qemu.conf"), QEMU_CONF)?;
            std::os::unix::fs::symlink(
                "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
                dir.join("drivers/libvirt_driver_qemu.so"),
            )?;
        }
        std::fs::write(dir.join("etc/libvirtd.conf"), conf)?;
        let log_path = dir.join("libvirtd.log");
        let log = std::fs::File::create(&log_path)?;
        // A mount namespace of its own: libvirt's directories are the host's, not the
        // machine's, and its UTS namespace carries the host's name.
        let boot = format!(
            "set -e; D={d}; \
             mkdir -p /run/libvirt /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; \
             mount --bind $D/run /run/libvirt; mount --bind $D/etc /etc/libvirt; \
             mount --bind $D/lib /var/lib/libvirt; mount --bind $D/cache /var/cache/libvirt; \
             mount --bind $D/log /var/log/libvirt; hostname {host}; \
             exec libvirtd --pid-file $D/libvirtd.pid",
            d = dir.display()
        );
        let mut cmd = Command::new(crate::lab::program("unshare"));
        cmd.args([
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg(boot)
        // No driver modules but those linked here: the test driver is built in.
        .env("LIBVIRT_DRIVER_DIR", dir.join("drivers"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        crate::cluster::unblock_signals(&mut cmd);
        let child = self.lab.spawn(host, cmd).with_context(|| {
            format!("cannot start libvirtd on {host} (is libvirt-daemon installed?)")
        })?;
        let hv = Libvirt::new(&uri);
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Err(e) = hv.list() {
            if Instant::now() > deadline {
                bail!(
                    "libvirtd of {host} does not answer at {uri}: {e}; its log:\n{}",
                    tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let first_boot = self.booted.insert(host.to_string());
        let given = self
            .give_domains(host, &hv, first_boot)
            .with_context(|| format!("cannot set up the domains of {host}"));
        self.hypervisors.insert(host.to_string(), (child, hv));
        given
    }

    fn give_domains(&self, host: &str, hv: &Libvirt, first_boot: bool) -> anyhow::Result<()> {
        if self.spec.has_vms() {
            return Ok(());
        }
        // The test driver's own sample domain would run on every host at once.
        hv.destroy("test").map_err(anyhow::Error::msg)?;
        hv.undefine("test").map_err(anyhow::Error::msg)?;
        let running = self.spec.domains.get(host).cloned().unwrap_or_default();
        let defined = self.spec.defined.get(host).cloned().unwrap_or_default();
        for name in running.iter().chain(&defined) {
            let mib = self
                .spec
                .domain_memory_mib
                .get(name)
                .copied()
                .unwrap_or(DEFAULT_DOMAIN_MIB);
            hv.define(&hypervisor::test_domain_xml(name, mib * 1024))
                .map_err(anyhow::Error::msg)?;
        }
        if first_boot {
            for name in &running {
                hv.start(name).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

    /// Runs `virsh ARGS` against `host`'s hypervisor, inside the host's namespace, and
    /// returns its exit code and output.
    pub fn virsh(&self, host: &str, args: &[String]) -> anyhow::Result<(i32, String)> {
        let mut cmd = Command::new("virsh");
        cmd.arg("--connect").arg(self.libvirt_uri(host)).args(args);
        self.run_on_host(host, cmd)
    }

    /// Runs `cmd` inside `host`'s namespace and cgroup, waits for it (at most 60 s), and
    /// returns its exit code and output (stdout then stderr).
    pub fn run_on_host(&self, host: &str, mut cmd: Command) -> anyhow::Result<(i32, String)> {
        let out_path = self.dir.join(host).join("command.out");
        let out = std::fs::File::create(&out_path)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let what = format!("{cmd:?}");
        let mut child = self
            .lab
            .spawn(host, cmd)
            .with_context(|| format!("cannot run {what} on {host}"))?;
        let status = crate::lab::spawn::wait_timeout(&mut child, Duration::from_secs(60))?;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} on {host} did not end within 60 s");
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        Ok((status.code().unwrap_or(-1), text))
    }
}
