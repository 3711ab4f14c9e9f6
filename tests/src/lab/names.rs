//! Every name and address a lab uses, derived from its id alone.
//!
//! Keeping these pure lets cleanup find a lab's leftovers from nothing but its id, and
//! lets the unit tests prove the kernel's 15-character interface name limit holds.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Largest number of simulated hosts: host addresses must stay below the rogue's `.200`.
pub const MAX_HOSTS: usize = 99;
/// Largest number of interconnects: each uses one `198.18.<k>.0/24` subnet.
pub const MAX_INTERCONNECTS: usize = 10;
/// Last octet of the rogue namespace's address on every interconnect.
pub const ROGUE_OCTET: u8 = 200;

/// Directory holding one run directory per lab.
pub const RUN_ROOT: &str = "/run/hvlab";
/// Prefix of every lab network namespace name.
pub const NETNS_PREFIX: &str = "hvl-";
/// Prefix of every lab cgroup directory.
pub const CGROUP_PREFIX: &str = "hvlab-";
/// Name of the rogue namespace's cgroup inside the lab cgroup.
pub const ROGUE: &str = "rogue";

/// Length of a lab id in hex digits.
const ID_LEN: usize = 4;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh candidate id; the caller claims it by creating the run directory exclusively.
pub fn candidate_id() -> String {
    let pid = std::process::id();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    id_from(pid, count, nanos)
}

/// Mixes pid, counter and a salt into an id so labs of different processes rarely collide.
pub fn id_from(pid: u32, count: u32, salt: u32) -> String {
    // splitmix-style finaliser: neighbouring pids and counters land far apart.
    let mut x =
        (u64::from(pid) << 32) ^ u64::from(count).wrapping_mul(0x9E37_79B9) ^ u64::from(salt);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{:0width$x}", x & 0xFFFF, width = ID_LEN)
}

/// True if `s` looks like a lab id, so cleanup never acts on foreign names.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Name of simulated host `i` (1-based).
pub fn host_name(i: usize) -> String {
    format!("h{i}")
}

/// The 1-based index of a host name like `h3`, if it is one.
pub fn host_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('h')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Network namespace of host `i`.
pub fn netns_host(id: &str, i: usize) -> String {
    format!("{NETNS_PREFIX}{id}-h{i}")
}

/// Network namespace holding the lab's bridges.
pub fn netns_switch(id: &str) -> String {
    format!("{NETNS_PREFIX}{id}-sw")
}

/// Network namespace of the rogue sender.
pub fn netns_rogue(id: &str) -> String {
    format!("{NETNS_PREFIX}{id}-rogue")
}

/// The lab id owning a namespace name, if the name is a lab's.
pub fn id_of_netns(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    is_id(id).then_some(id)
}

/// Interface of interconnect `k` inside a host or rogue namespace (fixed: namespaces differ).
pub fn host_if(k: usize) -> String {
    format!("ic{k}")
}

/// Bridge of interconnect `k` in the switch namespace.
pub fn bridge(id: &str, k: usize) -> String {
    format!("{id}b{k}")
}

/// Switch-side end of host `i`'s veth on interconnect `k`.
pub fn switch_port(id: &str, i: usize, k: usize) -> String {
    format!("{id}h{i}i{k}")
}

/// Switch-side end of the rogue's veth on interconnect `k`.
pub fn rogue_port(id: &str, k: usize) -> String {
    format!("{id}ri{k}")
}

/// Directory name of the lab's cgroup under the cgroup2 root.
pub fn cgroup_dir(id: &str) -> String {
    format!("{CGROUP_PREFIX}{id}")
}

/// The lab id owning a cgroup directory name, if the name is a lab's.
pub fn id_of_cgroup(name: &str) -> Option<&str> {
    name.strip_prefix(CGROUP_PREFIX).filter(|id| is_id(id))
}

/// Run directory of a lab.
pub fn run_dir(id: &str) -> PathBuf {
    PathBuf::from(RUN_ROOT).join(id)
}

/// Address of host `i` on interconnect `k`.
pub fn host_addr(i: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, k as u8, i as u8)
}

/// Largest number of guests: guest addresses stay below the virtual IPs at `.200`.
pub const MAX_GUESTS: usize = 99;
/// Third octet of the guest LAN, 198.18.32.0/24.
pub const GUEST_NET_OCTET: u8 = 32;
/// Last octet of guest 1's address; guest n has `GUEST_OCTET_BASE + n`.
pub const GUEST_OCTET_BASE: u8 = 10;
/// Interface of the guest LAN inside a guest namespace (fixed: namespaces differ).
pub const GUEST_IF: &str = "eth0";
/// Bridge in each host namespace that its guests are attached to.
pub const HOST_GUEST_BRIDGE: &str = "gbr";
/// Host-namespace end of the host's uplink to the guest LAN.
pub const HOST_GUEST_UPLINK: &str = "gup";

/// The 1-based index of a guest name like `g3`, if it is one.
pub fn guest_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('g')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Network namespace of guest `n`.
pub fn netns_guest(id: &str, n: usize) -> String {
    format!("{NETNS_PREFIX}{id}-g{n}")
}

/// Bridge of the guest LAN in the switch namespace.
pub fn guest_lan_bridge(id: &str) -> String {
    format!("{id}gl")
}

/// Switch-side end of host `i`'s uplink to the guest LAN.
pub fn guest_lan_port(id: &str, i: usize) -> String {
    format!("{id}h{i}gl")
}

/// Host-side end of guest `n`'s veth, inside its host's namespace.
pub fn guest_port(n: usize) -> String {
    format!("vg{n}")
}

/// Last octet of host 1's address on the guest LAN; host i has `HOST_GUEST_OCTET_BASE + i`.
pub const HOST_GUEST_OCTET_BASE: u8 = 110;
/// Hosts that can have an address on the guest LAN (below the virtual IPs at `.200`).
pub const MAX_GUEST_LAN_HOSTS: usize = 89;

/// Address of host `i` on the guest LAN (its guest bridge): where its guests reach
/// its agent over the host link.
pub fn host_guest_lan_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, GUEST_NET_OCTET, HOST_GUEST_OCTET_BASE + i as u8)
}

/// Address of guest `n` on the guest LAN.
pub fn guest_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, GUEST_NET_OCTET, GUEST_OCTET_BASE + n as u8)
}

/// Address of the rogue namespace on interconnect `k`.
pub fn rogue_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, k as u8, ROGUE_OCTET)
}

/// Prefix length of every interconnect subnet.
pub const PREFIX_LEN: u8 = 24;

/// Interface of the management network inside a host or BMC namespace.
pub const MGMT_IF: &str = "mgmt";
/// Third octet of the management subnet 198.19.254.0/24: outside 198.18.0.0/16, where the
/// interconnects live, so no interconnect count can ever reach it.
pub const MGMT_NET_OCTET: u8 = 254;
/// Added to a host's index to form the last octet of its BMC's address (`.101`..`.199`).
pub const BMC_OCTET_BASE: u8 = 100;

/// Network namespace of host `i`'s simulated BMC.
pub fn netns_bmc(id: &str, i: usize) -> String {
    format!("{NETNS_PREFIX}{id}-bmc{i}")
}

/// Bridge of the management network in the switch namespace.
pub fn mgmt_bridge(id: &str) -> String {
    format!("{id}mgmt")
}

/// Switch-side end of host `i`'s veth on the management network.
pub fn mgmt_host_port(id: &str, i: usize) -> String {
    format!("{id}h{i}m")
}

/// Switch-side end of the veth of host `i`'s BMC.
pub fn mgmt_bmc_port(id: &str, i: usize) -> String {
    format!("{id}bmc{i}")
}

/// Address of host `i` on the management network.
pub fn mgmt_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, MGMT_NET_OCTET, i as u8)
}

/// Address of host `i`'s BMC on the management network.
pub fn bmc_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, MGMT_NET_OCTET, BMC_OCTET_BASE + i as u8)
}

/// Cgroup of host `i`'s BMC inside the lab cgroup: beside the host's, so that cutting the
/// host's power leaves its BMC running.
pub fn bmc_cgroup(i: usize) -> String {
    format!("bmc{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest interface name the kernel accepts (IFNAMSIZ - 1).
    const IFNAME_MAX: usize = 15;

    #[test]
    fn ids_are_short_hex_and_vary() {
        let a = id_from(1234, 0, 0);
        let b = id_from(1234, 1, 0);
        let c = id_from(1235, 0, 0);
        for id in [&a, &b, &c] {
            assert!(is_id(id), "{id}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(is_id(&candidate_id()));
        assert!(!is_id("ABCD"));
        assert!(!is_id("abc"));
        assert!(!is_id("abcg"));
    }

    #[test]
    fn interface_names_fit_ifnamsiz_at_the_limits() {
        let id = "ffff";
        for i in [1, MAX_HOSTS] {
            for k in [0, MAX_INTERCONNECTS - 1] {
                let names = [
                    switch_port(id, i, k),
                    rogue_port(id, k),
                    bridge(id, k),
                    host_if(k),
                ];
                for n in names {
                    assert!(n.len() <= IFNAME_MAX, "{n} too long");
                }
            }
        }
    }

    #[test]
    fn namespace_names_carry_the_id_and_parse_back() {
        assert_eq!(netns_host("0a1b", 3), "hvl-0a1b-h3");
        assert_eq!(netns_switch("0a1b"), "hvl-0a1b-sw");
        assert_eq!(netns_rogue("0a1b"), "hvl-0a1b-rogue");
        assert_eq!(id_of_netns("hvl-0a1b-h3"), Some("0a1b"));
        assert_eq!(id_of_netns("hvl-zz-h3"), None);
        assert_eq!(id_of_netns("other"), None);
        assert_eq!(id_of_cgroup("hvlab-0a1b"), Some("0a1b"));
        assert_eq!(id_of_cgroup("hvlab-x"), None);
    }

    #[test]
    fn management_names_fit_and_parse_back() {
        let id = "ffff";
        for i in [1, MAX_HOSTS] {
            for n in [
                mgmt_bridge(id),
                mgmt_host_port(id, i),
                mgmt_bmc_port(id, i),
                MGMT_IF.to_string(),
            ] {
                assert!(n.len() <= IFNAME_MAX, "{n} too long");
            }
            assert_eq!(id_of_netns(&netns_bmc(id, i)), Some(id));
        }
        // No management port may collide with an interconnect port or bridge.
        assert_ne!(mgmt_bmc_port(id, 1), bridge(id, 1));
        assert_ne!(mgmt_host_port(id, 1), switch_port(id, 1, 0));
    }

    #[test]
    fn management_addresses_stay_apart() {
        assert_eq!(mgmt_addr(3), Ipv4Addr::new(198, 19, 254, 3));
        assert_eq!(bmc_addr(3), Ipv4Addr::new(198, 19, 254, 103));
        assert!(bmc_addr(MAX_HOSTS).octets()[3] < ROGUE_OCTET);
        assert!(mgmt_addr(MAX_HOSTS).octets()[3] < bmc_addr(1).octets()[3]);
        assert_ne!(
            mgmt_addr(1).octets()[..3],
            host_addr(1, MAX_INTERCONNECTS - 1).octets()[..3]
        );
    }

    #[test]
    fn host_names_round_trip() {
        assert_eq!(host_name(7), "h7");
        assert_eq!(host_index("h7"), Some(7));
        assert_eq!(host_index("h07"), None);
        assert_eq!(host_index("h"), None);
        assert_eq!(host_index("x1"), None);
    }

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(host_addr(2, 1), Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(rogue_addr(3), Ipv4Addr::new(198, 18, 3, 200));
        assert!(host_addr(MAX_HOSTS, 0).octets()[3] < ROGUE_OCTET);
    }
}
