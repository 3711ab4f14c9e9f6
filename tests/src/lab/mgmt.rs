//! The management network: one more bridge in the switch namespace joining every host to
//! every simulated BMC, the way fence agents on a host reach the BMCs of its peers.
//!
//! Host ports are bridge-isolated: a host reaches every BMC but no other host, so the
//! management network can never carry cluster traffic around a partition made with the
//! interconnect faults. The faults themselves only match `ic*` interfaces, so fencing
//! keeps working while a host is isolated, as with a real out-of-band network.

use super::{names, netns, Lab};
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// Prefix length of the management subnet.
pub const PREFIX_LEN: u8 = 24;

/// The `ip -batch` script for the switch namespace: the management bridge, one isolated
/// port per host and one ordinary port per BMC, whose peers land in their namespaces.
pub fn switch_script(id: &str, hosts: usize) -> String {
    let br = names::mgmt_bridge(id);
    let mut s =
        format!("link add {br} type bridge forward_delay 0 stp_state 0\nlink set {br} up\n");
    for i in 1..=hosts {
        let port = names::mgmt_host_port(id, i);
        s.push_str(&format!(
            "link add {port} type veth peer name {} netns {}\n",
            names::MGMT_IF,
            names::netns_host(id, i)
        ));
        s.push_str(&format!("link set {port} master {br} up\n"));
        // Isolated ports talk only to non-isolated ones (the BMCs), never to each other.
        s.push_str(&format!(
            "link set dev {port} type bridge_slave isolated on\n"
        ));
    }
    for i in 1..=hosts {
        let port = names::mgmt_bmc_port(id, i);
        s.push_str(&format!(
            "link add {port} type veth peer name {} netns {}\n",
            names::MGMT_IF,
            names::netns_bmc(id, i)
        ));
        s.push_str(&format!("link set {port} master {br} up\n"));
    }
    s
}

/// The `ip -batch` script inside a host or BMC namespace: its management address, link up.
/// `with_lo` also brings up loopback, which a fresh BMC namespace still has down.
pub fn member_script(addr: Ipv4Addr, with_lo: bool) -> String {
    let mut s = String::new();
    if with_lo {
        s.push_str("link set lo up\n");
    }
    s.push_str(&format!(
        "addr add {addr}/{PREFIX_LEN} dev {}\nlink set {} up\n",
        names::MGMT_IF,
        names::MGMT_IF
    ));
    s
}

impl Lab {
    /// Address of `host` on the management network; panics if the host is not part of
    /// the lab. Configured only once [`Lab::start_bmcs`] has run.
    pub fn mgmt_address(&self, host: &str) -> IpAddr {
        let i = self.index(host).unwrap_or_else(|e| panic!("{e}"));
        IpAddr::V4(names::mgmt_addr(i))
    }

    /// Address of `host`'s simulated BMC; panics if the host is not part of the lab.
    /// Answers only once [`Lab::start_bmcs`] has run.
    pub fn bmc_address(&self, host: &str) -> IpAddr {
        let i = self.index(host).unwrap_or_else(|e| panic!("{e}"));
        IpAddr::V4(names::bmc_addr(i))
    }

    /// Path of the network namespace of `host`'s BMC (for `nsenter --net=` and logs).
    pub fn bmc_netns_path(&self, host: &str) -> Result<PathBuf> {
        Ok(netns::path(&names::netns_bmc(&self.id, self.index(host)?)))
    }

    /// Creates the BMC namespaces and wires hosts and BMCs to the management bridge.
    pub(super) fn build_mgmt(&self) -> Result<()> {
        let hosts = self.spec.hosts;
        for i in 1..=hosts {
            let ns = names::netns_bmc(&self.id, i);
            netns::add(&ns)?;
            if Path::new("/proc/sys/net/ipv6").exists() {
                // Same reason as for the hosts: no DAD or solicitation noise.
                netns::sysctl(&ns, "ipv6/conf/default/disable_ipv6", "1")?;
            }
        }
        let switch = names::netns_switch(&self.id);
        netns::ip_batch(&switch, &switch_script(&self.id, hosts))
            .with_context(|| format!("building the management network of lab {}", self.id))?;
        for i in 1..=hosts {
            netns::ip_batch(
                &names::netns_host(&self.id, i),
                &member_script(names::mgmt_addr(i), false),
            )?;
            netns::ip_batch(
                &names::netns_bmc(&self.id, i),
                &member_script(names::bmc_addr(i), true),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_script_isolates_host_ports_only() {
        let s = switch_script("abcd", 2);
        assert!(s.starts_with("link add abcdmgmt type bridge"));
        assert!(s.contains("link add abcdh2m type veth peer name mgmt netns hvl-abcd-h2\n"));
        assert!(s.contains("link set dev abcdh2m type bridge_slave isolated on\n"));
        assert!(s.contains("link add abcdbmc2 type veth peer name mgmt netns hvl-abcd-bmc2\n"));
        assert!(s.contains("link set abcdbmc2 master abcdmgmt up\n"));
        assert!(!s.contains("abcdbmc2 type bridge_slave isolated"));
    }

    #[test]
    fn member_script_brings_loopback_up_for_bmcs() {
        let bmc = member_script(names::bmc_addr(1), true);
        assert!(bmc.starts_with("link set lo up\n"));
        assert!(bmc.contains("addr add 198.19.254.101/24 dev mgmt\n"));
        let host = member_script(names::mgmt_addr(1), false);
        assert!(!host.contains("lo up"));
        assert!(host.contains("addr add 198.19.254.1/24 dev mgmt\n"));
    }
}
