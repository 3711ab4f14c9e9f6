//! What the tests that start the real hv-hostd share: a two-host configuration on
//! loopback (the second host never starts), the agent's process, and reading datagrams.

#![allow(dead_code)]

#[allow(unused_imports)] // each test uses some of them
pub use hvcluster_runtime::testing::process::{read_for, wait_for, Agent};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Writes `cluster.toml` and its key into `dir`: host h1 on 127.0.0.1, h2 on 127.0.0.2,
/// kdump off. h1 keeps waiting for h2's heartbeats.
pub fn write_config(dir: &Path) -> PathBuf {
    let key = dir.join("cluster.key");
    std::fs::write(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("cluster.toml");
    let text = format!(
        r#"
[cluster]
name = "service-test"
key_file = "cluster.key"

[[interconnect]]
name = "ic0"
port = {port}

[[host]]
name = "h1"
node_id = 1
addresses = {{ ic0 = "127.0.0.1" }}

[[host]]
name = "h2"
node_id = 2
addresses = {{ ic0 = "127.0.0.2" }}

[kdump]
enabled = false
"#,
        port = free_udp_port()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// hv-hostd as host h1 of the configuration in `dir`, its admin socket and state there,
/// its standard streams to nothing: the caller adds environment and streams.
pub fn hostd(dir: &Path) -> Command {
    let config = write_config(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hv-hostd"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--host", "h1"])
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A libc call's return code as a result.
pub fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// In a child before exec: a mount namespace of its own, whose mounts nobody outside
/// sees.
pub fn private_mount_namespace() -> std::io::Result<()> {
    // SAFETY: plain syscalls with valid NUL-terminated strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))
    }
}

/// Bind-mounts `source` on `target` (in a private mount namespace).
pub fn bind(source: &std::ffi::CStr, target: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: a plain syscall with valid NUL-terminated strings.
    unsafe {
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))
    }
}
