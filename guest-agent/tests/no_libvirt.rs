//! hv-guestd runs inside guests, where libvirt has no business: the guest agent is built
//! on the runtime and the common crate only. These tests fail when the host agent or
//! the libvirt binding comes back into its dependencies or its binary.

use std::collections::BTreeSet;
use std::process::Command;

/// Packages that tie a binary to libvirt.
const HOST_ONLY: [&str; 4] = [
    "virt",
    "virt-sys",
    "hvcluster-libvirt",
    "hvcluster-host-agent",
];

#[test]
fn hv_guestd_does_not_load_libvirt() {
    let binary = env!("CARGO_BIN_EXE_hv-guestd");
    let out = Command::new("ldd").arg(binary).output().unwrap();
    let libraries = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && libraries.contains("libc.so"),
        "ldd {binary} did not list the libraries: {libraries}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let virt: Vec<&str> = libraries
        .lines()
        .filter(|l| l.to_lowercase().contains("libvirt"))
        .collect();
    assert!(virt.is_empty(), "hv-guestd links libvirt: {virt:?}");
}

/// The packages the guest agent's library and binary are built from on this machine:
/// everything reachable from it through normal (not dev- or build-) dependencies.
fn linked_packages() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "--package", env!("CARGO_PKG_NAME")])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_guest_agent_depends_on_no_host_only_crate() {
    let linked = linked_packages();
    assert!(
        linked.contains("hvcluster-runtime") && linked.contains("tokio"),
        "the dependency walk missed the runtime: {linked:?}"
    );
    let host_only: Vec<&str> = HOST_ONLY
        .into_iter()
        .filter(|p| linked.contains(*p))
        .collect();
    assert!(
        host_only.is_empty(),
        "hvcluster-guest-agent depends on {host_only:?}; keep what the guest agent needs \
         in hvcluster-runtime or hvcluster-common"
    );
}
