//! Named network namespaces and the lab's link layer (bridges, veths, addresses).
//!
//! All links are created from inside the switch namespace with their peers placed directly
//! into the host namespaces, so no lab interface ever exists in the root namespace.

use super::names;
use super::spawn::{in_netns, run_root};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace's handle.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Locates a system program, preferring PATH but also trying sbin directories that a
/// non-login environment may leave out.
pub fn program(name: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    from_path
        .into_iter()
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Creates a named namespace.
pub fn add(name: &str) -> Result<()> {
    let mut cmd = Command::new(program("ip"));
    cmd.args(["netns", "add", name]);
    run_root(cmd, None).with_context(|| format!("creating network namespace {name}"))?;
    Ok(())
}

/// Deletes a named namespace if it exists.
pub fn delete(name: &str) -> Result<()> {
    if !path(name).exists() {
        return Ok(());
    }
    let mut cmd = Command::new(program("ip"));
    cmd.args(["netns", "del", name]);
    run_root(cmd, None).with_context(|| format!("deleting network namespace {name}"))?;
    Ok(())
}

/// Names of every namespace known to `ip netns`.
pub fn list() -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs an `ip -batch` script inside a namespace; `ip -n` only switches the network
/// namespace of the `ip` process itself, which is all these link commands need.
pub fn ip_batch(ns: &str, script: &str) -> Result<()> {
    let mut cmd = Command::new(program("ip"));
    cmd.args(["-n", ns, "-batch", "-"]);
    run_root(cmd, Some(script))
        .with_context(|| format!("configuring links in namespace {ns}:\n{script}"))?;
    Ok(())
}

/// Writes a sysctl under /proc/sys/net as seen from inside namespace `ns`.
///
/// /proc/sys/net resolves against the opening thread's network namespace, so a thread that
/// joined `ns` sees that namespace's settings.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let file = PathBuf::from("/proc/sys/net").join(key);
    in_netns(&path(ns), || fs::write(&file, value))?
        .with_context(|| format!("writing {value} to {} in namespace {ns}", file.display()))
}

/// Reads a sysctl under /proc/sys/net as seen from inside namespace `ns`.
pub fn read_sysctl(ns: &str, key: &str) -> Result<String> {
    let file = PathBuf::from("/proc/sys/net").join(key);
    let text = in_netns(&path(ns), || fs::read_to_string(&file))?
        .with_context(|| format!("reading {} in namespace {ns}", file.display()))?;
    Ok(text.trim().to_string())
}

/// One end of the lab attached to every bridge: a host or the rogue.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its namespace.
    pub netns: String,
    /// Its switch-side port name for each interconnect.
    pub ports: Vec<String>,
    /// Its address on each interconnect.
    pub addrs: Vec<std::net::Ipv4Addr>,
}

/// The `ip -batch` script run inside the switch namespace: bridges plus veths whose peers
/// go straight into the members' namespaces.
pub fn switch_script(id: &str, interconnects: usize, members: &[Member]) -> String {
    let mut s = String::new();
    s.push_str("link set lo up\n");
    for k in 0..interconnects {
        let br = names::bridge(id, k);
        // No STP and no forward delay: ports forward as soon as they are up.
        s.push_str(&format!(
            "link add {br} type bridge forward_delay 0 stp_state 0\n"
        ));
        s.push_str(&format!("link set {br} up\n"));
    }
    for m in members {
        for (k, port) in m.ports.iter().enumerate() {
            let inner = names::host_if(k);
            s.push_str(&format!(
                "link add {port} type veth peer name {inner} netns {}\n",
                m.netns
            ));
            s.push_str(&format!(
                "link set {port} master {} up\n",
                names::bridge(id, k)
            ));
        }
    }
    s
}

/// The `ip -batch` script run inside a member's namespace: loopback, addresses, links up.
pub fn member_script(m: &Member) -> String {
    let mut s = String::from("link set lo up\n");
    for (k, addr) in m.addrs.iter().enumerate() {
        let inner = names::host_if(k);
        s.push_str(&format!(
            "addr add {addr}/{} dev {inner}\n",
            names::PREFIX_LEN
        ));
        s.push_str(&format!("link set {inner} up\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        Member {
            netns: "hvl-abcd-h1".into(),
            ports: vec!["abcdh1i0".into(), "abcdh1i1".into()],
            addrs: vec![names::host_addr(1, 0), names::host_addr(1, 1)],
        }
    }

    #[test]
    fn switch_script_builds_bridges_then_ports() {
        let s = switch_script("abcd", 2, &[member()]);
        assert!(s.contains("link add abcdb0 type bridge forward_delay 0 stp_state 0\n"));
        assert!(s.contains("link add abcdh1i1 type veth peer name ic1 netns hvl-abcd-h1\n"));
        assert!(s.contains("link set abcdh1i1 master abcdb1 up\n"));
        assert!(s.find("abcdb1 up").unwrap() < s.find("master abcdb1").unwrap());
    }

    #[test]
    fn member_script_assigns_addresses() {
        let s = member_script(&member());
        assert!(s.starts_with("link set lo up\n"));
        assert!(s.contains("addr add 198.18.1.1/24 dev ic1\n"));
        assert!(s.contains("link set ic0 up\n"));
    }
}
