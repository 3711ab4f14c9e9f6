//! The real tier: guests that are QEMU virtual machines (TCG) under their host's own full
//! `libvirtd`. Each VM boots the lab's guest image with its node name and guest LAN
//! address on the kernel command line, joins the guest LAN on its host's bridge, and has
//! two virtio-serial channels: `org.hvcluster.link` (its host link; the host agent
//! connects to the channel sockets in `[host_link] channel_dir`) and
//! `org.hvcluster.admin` (the guest agent's admin requests, reached from the host end's
//! socket, which is what the lab's guest steps use).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cluster::LabCluster;

/// Guest-side device of the host link channel.
pub const LINK_PORT: &str = "/dev/virtio-ports/org.hvcluster.link";
/// Guest-side device of the admin channel.
pub const ADMIN_PORT: &str = "/dev/virtio-ports/org.hvcluster.admin";

/// The guest.toml sections that differ for VM guests.
pub fn vm_guest_config_sections(host_link: bool, host_public_key: &str) -> String {
    let mut out = format!("[admin]\nport = \"{ADMIN_PORT}\"\n\n");
    if host_link {
        out.push_str(&format!(
            "[host_link]\ntransport = \"virtio-serial\"\ndevice = \"{LINK_PORT}\"\n\
             host_public_key = \"{host_public_key}\"\n\n"
        ));
    }
    out
}

impl LabCluster {
    /// Whether `name` is a guest that is a VM.
    pub fn is_vm(&self, name: &str) -> bool {
        self.spec.guests.iter().any(|g| g.name == name && g.vm)
    }

    /// Directory of the link channel sockets of `host`'s VMs (`[host_link] channel_dir`).
    pub fn channel_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("channels")
    }

    /// Host end of VM `guest`'s admin channel on `host`.
    fn admin_socket_on(&self, host: &str, guest: &str) -> PathBuf {
        self.dir
            .join(host)
            .join("admin-channels")
            .join(format!("{guest}.sock"))
    }

    /// Host end of VM `guest`'s admin channel: its admin socket, as the lab sees it. On
    /// the host whose libvirt runs the domain (it may have been moved there), else on its
    /// own host. The lab asks libvirt rather than trying the sockets: every connection
    /// to a channel's host end is one the guest sees come and go.
    pub fn vm_admin_socket(&self, guest: &str) -> anyhow::Result<PathBuf> {
        let home = self.lab.guest_host(guest)?;
        let runs_on = |host: &str| {
            self.hypervisors.get(host).is_some_and(|(_, hv)| {
                matches!(
                    hv.info(guest),
                    Ok(Some(d)) if d.state == hvcluster_host_agent::hypervisor::State::Running
                )
            })
        };
        let host = if runs_on(&home) {
            home
        } else {
            self.lab
                .host_names()
                .into_iter()
                .find(|h| runs_on(h))
                .unwrap_or(home)
        };
        Ok(self.admin_socket_on(&host, guest))
    }

    /// The guest image plus this lab's guest configuration and key.
    fn lab_initrd(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let bin = crate::cluster::bin_dir()?;
        let image =
            crate::lab::image::guest_image(&bin.join("hvlab-guest-image"), &bin.join("hv-guestd"))
                .context("cannot build the guest image")?;
        let initrd = self.dir.join("guest-initrd.cpio");
        if !initrd.exists() {
            let config = std::fs::read(self.guest_config_path())?;
            let key = std::fs::read(self.dir.join(crate::guests::GUEST_KEY_FILE))?;
            crate::lab::image::initrd_with(
                &image.initrd,
                &[
                    ("etc/hvcluster/guest.toml", config),
                    (
                        &format!("etc/hvcluster/{}", crate::guests::GUEST_KEY_FILE),
                        key,
                    ),
                ],
                &initrd,
                &self.dir.join("guest-initrd"),
            )?;
        }
        Ok((image.kernel, initrd))
    }

    /// Defines and starts VM `guest` on its host, and waits until its agent answers on
    /// the admin channel.
    pub(crate) fn start_vm(&mut self, guest: &str) -> anyhow::Result<()> {
        let host = self.lab.guest_host(guest)?;
        let (kernel, initrd) = self.lab_initrd()?;
        let n: u8 = guest
            .trim_start_matches('g')
            .parse()
            .with_context(|| format!("{guest:?} is not a lab guest name"))?;
        // Every host's: a VM may be moved there.
        for h in self.lab.host_names() {
            for d in ["channels", "admin-channels"] {
                std::fs::create_dir_all(self.dir.join(&h).join(d))?;
            }
        }
        let xml = format!(
            "<domain type='qemu'><name>{guest}</name><uuid>{uuid}</uuid>\
             <memory unit='MiB'>{mib}</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{kernel}</kernel>\
             <initrd>{initrd}</initrd><cmdline>console=ttyS0 quiet hv.node={guest} \
             hv.addr={addr}/{prefix}</cmdline></os><features><acpi/></features>\
             <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>\
             <on_crash>destroy</on_crash><devices>\
             <emulator>/usr/bin/qemu-system-x86_64</emulator>\
             <serial type='file'><source path='{console}'/><target port='0'/></serial>\
             <interface type='bridge'><source bridge='{bridge}'/>\
             <mac address='52:54:00:48:56:{n:02x}'/><model type='virtio'/></interface>\
             <channel type='unix'><source mode='bind' path='{link}'/>\
             <target type='virtio' name='org.hvcluster.link'/></channel>\
             <channel type='unix'><source mode='bind' path='{admin}'/>\
             <target type='virtio' name='org.hvcluster.admin'/></channel>\
             <memballoon model='none'/></devices></domain>",
            uuid = hvcluster_host_agent::hypervisor::uuid_of(guest),
            mib = crate::lab::image::VM_MIB,
            kernel = kernel.display(),
            initrd = initrd.display(),
            addr = self.lab.guest_address(guest)?,
            prefix = crate::lab::PREFIX_LEN,
            console = self.dir.join(guest).with_extension("console").display(),
            bridge = crate::lab::HOST_GUEST_BRIDGE,
            link = self
                .channel_dir(&host)
                .join(format!("{guest}.sock"))
                .display(),
            admin = self.admin_socket_on(&host, guest).display(),
        );
        let hv = &self
            .hypervisors
            .get(&host)
            .with_context(|| format!("{host} has no hypervisor"))?
            .1;
        hv.define(&xml).map_err(anyhow::Error::msg)?;
        hv.start(guest)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot start VM {guest} on {host}"))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.guest_status(guest) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!(
                    "VM {guest} did not answer on its admin channel within 120 s ({e:#}); its \
                     console:\n{}",
                    crate::cluster::tail(&self.dir.join(guest).with_extension("console"))
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}
