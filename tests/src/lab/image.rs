//! The real tier's guest image: a Debian kernel (booted directly, PVH, from its
//! uncompressed `vmlinux`) and a busybox initramfs whose init loads the virtio modules,
//! configures the guest LAN address given on the kernel command line, names the
//! virtio-serial ports as udev would, and runs `hv-guestd`. Built once into a cache
//! directory and rebuilt when `hv-guestd` changes; a guest cluster's configuration and
//! key travel in a second cpio archive appended per lab.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::netns::program;

/// Virtio modules in load order (each after those it depends on).
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "drivers/char/virtio_console",
];

/// Memory of a lab VM, MiB (about the least this kernel and agent boot in).
pub const VM_MIB: u64 = 160;

/// The guest's init: PID 1, never exits.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /var/lib/hvcluster /run/hvlab-guest /run/resource-agents
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko"; done
for a in $(cat /proc/cmdline); do
  case "$a" in
    hv.node=*) NODE=${a#hv.node=} ;;
    hv.addr=*) ADDR=${a#hv.addr=} ;;
  esac
done
hostname "$NODE"
ip link set lo up
ip link set eth0 up
ip addr add "$ADDR" dev eth0
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
echo "hvlab guest $NODE: init done at $(cut -d' ' -f1 /proc/uptime) s"
while true; do
  HV_LOG=info /bin/hv-guestd --config /etc/hvcluster/guest.toml --node "$NODE" \
    --state-dir /var/lib/hvcluster
  echo "hv-guestd exited with $?; started again in 1 s"
  sleep 1
done
"#;

/// A built guest image.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The kernel, uncompressed (ELF with a PVH entry).
    pub kernel: PathBuf,
    /// The initramfs without any cluster's configuration.
    pub initrd: PathBuf,
}

/// The image in `cache`, built or rebuilt as needed around `guestd` (the `hv-guestd`
/// binary to run in the guests).
pub fn guest_image(cache: &Path, guestd: &Path) -> Result<GuestImage> {
    std::fs::create_dir_all(cache)?;
    let kernel = cache.join("vmlinux");
    let modules = cache.join("modules");
    if !kernel.exists() || !modules.join("order").exists() {
        fetch_kernel(cache, &kernel, &modules).context("cannot get the guest kernel")?;
    }
    let initrd = cache.join("initrd.cpio");
    let newer = |a: &Path, b: &Path| -> bool {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (m(a), m(b)) {
            (Some(a), Some(b)) => a > b,
            _ => true,
        }
    };
    if !initrd.exists() || newer(guestd, &initrd) {
        build_initrd(cache, &modules, guestd, &initrd).context("cannot build the initramfs")?;
    }
    Ok(GuestImage { kernel, initrd })
}

/// Downloads the distribution's kernel package, extracts `vmlinux` and the virtio
/// modules.
fn fetch_kernel(cache: &Path, kernel: &Path, modules: &Path) -> Result<()> {
    let deps = run(Command::new(program("apt-cache")).args(["depends", "linux-image-amd64"]))?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .context("apt-cache names no kernel package for linux-image-amd64")?
        .to_string();
    let work = cache.join("kernel-package");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    run(Command::new(program("apt-get"))
        .args(["download", "-q", &package])
        .current_dir(&work))
    .with_context(|| format!("downloading {package}"))?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no package")?;
    let tree = work.join("tree");
    run(Command::new(program("dpkg-deb"))
        .arg("-x")
        .arg(&deb)
        .arg(&tree))?;
    let vmlinuz = std::fs::read_dir(tree.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("the kernel package has no /boot/vmlinuz-*")?;
    let version = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    // The bzImage carries the kernel as an xz stream: unpacked, it boots without the
    // decompressor (much faster under emulation).
    let packed = std::fs::read(&vmlinuz)?;
    let start = packed
        .windows(6)
        .position(|w| w == b"\xfd7zXZ\x00")
        .context("no xz stream in the kernel image")?;
    let mut xz = Command::new(program("xz"))
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(kernel.with_extension("new"))?)
        .spawn()
        .context("cannot run xz")?;
    {
        use std::io::Write;
        let mut stdin = xz.stdin.take().context("xz without stdin")?;
        // xz stops reading at the end of the stream; what follows it is not the kernel.
        match stdin.write_all(&packed[start..]) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    if !xz.wait()?.success() {
        bail!("xz could not unpack the kernel");
    }
    let _ = std::fs::remove_dir_all(modules);
    std::fs::create_dir_all(modules)?;
    let tree_modules = tree.join("lib/modules").join(&version).join("kernel");
    let mut order = String::new();
    for m in MODULES {
        let name = Path::new(m)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        std::fs::copy(
            tree_modules.join(format!("{m}.ko")),
            modules.join(format!("{name}.ko")),
        )
        .with_context(|| format!("module {m} of {package}"))?;
        order.push_str(&name);
        order.push('\n');
    }
    std::fs::write(modules.join("order"), order)?;
    std::fs::rename(kernel.with_extension("new"), kernel)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The initramfs: busybox, the modules, `hv-guestd` (stripped) and its libraries.
fn build_initrd(cache: &Path, modules: &Path, guestd: &Path, out: &Path) -> Result<()> {
    let root = cache.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "bin",
        "etc/hvcluster",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(program("busybox"), root.join("bin/busybox")).context("busybox-static")?;
    for e in std::fs::read_dir(modules)? {
        let p = e?.path();
        std::fs::copy(
            &p,
            root.join("lib/modules")
                .join(p.file_name().unwrap_or_default()),
        )?;
    }
    run(Command::new(program("strip"))
        .arg("-o")
        .arg(root.join("bin/hv-guestd"))
        .arg(guestd))?;
    // Its shared libraries, at the paths the dynamic loader looks for them.
    for line in run(Command::new(program("ldd")).arg(guestd))?.lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = path {
            let to = root.join(lib.strip_prefix("/").unwrap_or(&lib));
            std::fs::create_dir_all(to.parent().unwrap_or(&root))?;
            std::fs::copy(&lib, &to)?;
        }
    }
    let init = root.join("init");
    std::fs::write(&init, INIT)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    }
    cpio(&root, &out.with_extension("new"))?;
    std::fs::rename(out.with_extension("new"), out)?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// A second archive with `files` (path inside the guest, content), appended to the
/// base initramfs: the kernel unpacks both.
pub fn initrd_with(
    base: &Path,
    files: &[(&str, Vec<u8>)],
    out: &Path,
    scratch: &Path,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(scratch);
    for (path, content) in files {
        let to = scratch.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap_or(scratch))?;
        // Configuration and keys: private to root, as the agents require of a key.
        crate::keys::write_key(&to, content)?;
    }
    let extra = out.with_extension("extra");
    cpio(scratch, &extra)?;
    let mut joined = std::fs::read(base)?;
    joined.extend(std::fs::read(&extra)?);
    std::fs::write(out, joined)?;
    let _ = std::fs::remove_file(extra);
    Ok(())
}

/// `dir` as a newc cpio archive.
fn cpio(dir: &Path, out: &Path) -> Result<()> {
    let list = run(Command::new(program("find")).arg(".").current_dir(dir))?;
    let mut child = Command::new(program("cpio"))
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out)?)
        .spawn()
        .context("cannot run cpio")?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .context("cpio without stdin")?
            .write_all(list.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("cpio failed");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
