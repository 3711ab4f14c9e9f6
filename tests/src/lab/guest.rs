//! Simulated guests: each a network namespace attached to its host's guest bridge, its
//! processes in a subgroup of the host's cgroup. A host's power loss kills its guests and
//! a host hang freezes them, because both act on the host's whole cgroup subtree.
//!
//! The guest LAN is 198.18.32.0/24: a bridge in the switch namespace, an uplink from every
//! host namespace into it, and in each host namespace a bridge `gbr` holding the uplink and
//! the host's guests, as a hypervisor bridges its VMs onto the network.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{bail, Context, Result};

use super::{cgroup, names, netns, Lab};

/// The `ip -batch` script run inside the switch namespace: the guest LAN bridge and one
/// uplink per host, whose other end goes into the host's namespace.
pub fn lan_switch_script(id: &str, hosts: usize) -> String {
    let br = names::guest_lan_bridge(id);
    let mut s =
        format!("link add {br} type bridge forward_delay 0 stp_state 0\nlink set {br} up\n");
    for i in 1..=hosts {
        let port = names::guest_lan_port(id, i);
        s.push_str(&format!(
            "link add {port} type veth peer name {} netns {}\nlink set {port} master {br} up\n",
            names::HOST_GUEST_UPLINK,
            names::netns_host(id, i)
        ));
    }
    s
}

/// The script run inside host `i`'s namespace: its guest bridge with the uplink in it,
/// and the host's own address on it (where its guests reach its agent).
pub fn lan_host_script(i: usize) -> String {
    let br = names::HOST_GUEST_BRIDGE;
    format!(
        "link add {br} type bridge forward_delay 0 stp_state 0\nlink set {} master {br} up\n\
         addr add {}/{} dev {br}\nlink set {br} up\n",
        names::HOST_GUEST_UPLINK,
        names::host_guest_lan_addr(i),
        names::PREFIX_LEN
    )
}

/// The script run inside the host namespace for guest `n`: its veth on the guest bridge.
pub fn guest_port_script(n: usize, guest_ns: &str) -> String {
    let port = names::guest_port(n);
    format!(
        "link add {port} type veth peer name {} netns {guest_ns}\nlink set {port} master {} up\n",
        names::GUEST_IF,
        names::HOST_GUEST_BRIDGE
    )
}

/// The script run inside guest `n`'s namespace: loopback, its address, link up.
pub fn guest_script(n: usize) -> String {
    format!(
        "link set lo up\naddr add {}/{} dev {if_}\nlink set {if_} up\n",
        names::guest_addr(n),
        names::PREFIX_LEN,
        if_ = names::GUEST_IF
    )
}

impl Lab {
    fn guest_index(&self, guest: &str) -> Result<usize> {
        match names::guest_index(guest) {
            Some(n) if n <= names::MAX_GUESTS => Ok(n),
            _ => bail!(
                "{guest:?} is not a lab guest name (guests are g1..g{})",
                names::MAX_GUESTS
            ),
        }
    }

    /// Host a guest of this lab runs on.
    pub fn guest_host(&self, guest: &str) -> Result<String> {
        self.guests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(guest)
            .cloned()
            .with_context(|| format!("lab {} has no guest {guest:?}", self.id))
    }

    /// Adds guest `guest` (`g1`..) on `host`: its namespace, its port on the host's guest
    /// bridge, its address and its cgroup under the host's. A `vm` guest (a virtual
    /// machine of the host's libvirtd) gets none of these: only the guest LAN, which its
    /// virtual NIC joins on the host's guest bridge.
    pub fn add_guest(&self, guest: &str, host: &str, vm: bool) -> Result<()> {
        let n = self.guest_index(guest)?;
        let i = self.index(host)?;
        let mut guests = self.guests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(on) = guests.get(guest) {
            bail!("guest {guest} already runs on {on}");
        }
        if guests.is_empty() {
            netns::ip_batch(
                &names::netns_switch(&self.id),
                &lan_switch_script(&self.id, self.spec.hosts),
            )
            .context("building the guest LAN")?;
            for h in 1..=self.spec.hosts {
                netns::ip_batch(&names::netns_host(&self.id, h), &lan_host_script(h))?;
            }
        }
        if vm {
            guests.insert(guest.to_string(), host.to_string());
            return Ok(());
        }
        let ns = names::netns_guest(&self.id, n);
        netns::add(&ns)?;
        if Path::new("/proc/sys/net/ipv6").exists() {
            netns::sysctl(&ns, "ipv6/conf/default/disable_ipv6", "1")?;
        }
        netns::ip_batch(&names::netns_host(&self.id, i), &guest_port_script(n, &ns))?;
        netns::ip_batch(&ns, &guest_script(n))?;
        cgroup::create(&self.cgroup_dir(host).join(guest))?;
        guests.insert(guest.to_string(), host.to_string());
        Ok(())
    }

    /// Address of `host` on the guest LAN, where its guests reach its agent.
    pub fn host_guest_lan_address(&self, host: &str) -> Result<IpAddr> {
        let i = self.index(host)?;
        if i > names::MAX_GUEST_LAN_HOSTS {
            bail!(
                "only hosts h1..h{} can have guests",
                names::MAX_GUEST_LAN_HOSTS
            );
        }
        Ok(IpAddr::V4(names::host_guest_lan_addr(i)))
    }

    /// Address of a guest on the guest LAN.
    pub fn guest_address(&self, guest: &str) -> Result<IpAddr> {
        Ok(IpAddr::V4(names::guest_addr(self.guest_index(guest)?)))
    }

    /// Path of a guest's network namespace handle.
    pub fn guest_netns_path(&self, guest: &str) -> Result<PathBuf> {
        Ok(netns::path(&names::netns_guest(
            &self.id,
            self.guest_index(guest)?,
        )))
    }

    /// A guest's cgroup, a subgroup of its host's.
    pub fn guest_cgroup(&self, guest: &str) -> Result<PathBuf> {
        Ok(self.cgroup_dir(&self.guest_host(guest)?).join(guest))
    }

    /// Starts `cmd` inside the guest's namespace and cgroup; the caller reaps it.
    pub fn spawn_guest(&self, guest: &str, cmd: Command) -> io::Result<Child> {
        let invalid =
            |e: anyhow::Error| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:#}"));
        let ns = self.guest_netns_path(guest).map_err(invalid)?;
        let cgroup = self.guest_cgroup(guest).map_err(invalid)?;
        self.spawn_in(&ns, &cgroup, cmd)
    }

    /// The guest crashes: every process of it is killed at once.
    pub fn kill_guest(&self, guest: &str) -> Result<()> {
        let dir = self.guest_cgroup(guest)?;
        cgroup::kill(&dir).with_context(|| format!("killing guest {guest}"))?;
        Ok(())
    }

    /// The guest hangs: every process of it is frozen.
    pub fn hang_guest(&self, guest: &str) -> Result<()> {
        cgroup::freeze(&self.guest_cgroup(guest)?)
            .with_context(|| format!("freezing guest {guest}"))
    }

    /// The shell command a host agent of this lab runs to destroy one of its guests
    /// (`[hypervisor] destroy_command`, with `{host}` and `{domain}` filled in by the
    /// agent; a lab guest's domain is its name): kill every process of the guest's
    /// cgroup, thaw it, and wait until it is empty.
    pub fn guest_destroy_command(&self) -> String {
        let dir = format!("{}/{{host}}/{{domain}}", self.cgroup.display());
        format!(
            "echo 1 > {dir}/cgroup.kill && echo 0 > {dir}/cgroup.freeze && \
             for i in $(seq 100); do grep -q 'populated 0' {dir}/cgroup.events && exit 0; sleep 0.05; done; \
             echo 'guest processes still running' >&2; exit 1"
        )
    }

    /// Runs `f` on a fresh thread inside a guest's network namespace.
    pub fn run_in_guest<T: Send>(&self, guest: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.guest_netns_path(guest)?;
        super::spawn::in_netns(&path, f)
            .with_context(|| format!("running in namespace {}", path.display()))
    }

    /// Name of a guest's namespace, for logs.
    pub fn guest_netns_name(&self, guest: &str) -> Result<String> {
        Ok(names::netns_guest(&self.id, self.guest_index(guest)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_lan_scripts_wire_hosts_and_guests() {
        let sw = lan_switch_script("abcd", 2);
        assert!(sw.contains("link add abcdgl type bridge forward_delay 0 stp_state 0\n"));
        assert!(sw.contains("link add abcdh2gl type veth peer name gup netns hvl-abcd-h2\n"));
        assert!(sw.find("abcdgl up").unwrap() < sw.find("master abcdgl").unwrap());
        assert!(lan_host_script(2).contains("link set gup master gbr up\n"));
        assert!(lan_host_script(2).contains("addr add 198.18.32.112/24 dev gbr\n"));
        let port = guest_port_script(3, "hvl-abcd-g3");
        assert!(port.contains("link add vg3 type veth peer name eth0 netns hvl-abcd-g3\n"));
        assert!(guest_script(3).contains("addr add 198.18.32.13/24 dev eth0\n"));
    }

    #[test]
    fn guest_names_and_addresses() {
        assert_eq!(names::guest_index("g12"), Some(12));
        assert_eq!(names::guest_index("g0x"), None);
        assert_eq!(names::guest_index("h1"), None);
        assert_eq!(names::netns_guest("abcd", 2), "hvl-abcd-g2");
        assert_eq!(names::id_of_netns("hvl-abcd-g2"), Some("abcd"));
        assert!(names::guest_lan_port("abcd", 99).len() <= 15);
        assert_eq!(names::guest_addr(99).octets(), [198, 18, 32, 109]);
    }
}
