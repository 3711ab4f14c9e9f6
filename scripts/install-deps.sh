#!/usr/bin/env bash
# Installs every system package hvcluster needs on a fresh Debian 12 machine (as root).
# Quick and quiet when everything is already there.
set -euo pipefail

packages=(
  pkg-config                      # the virt crate finds libvirt
  iproute2 nftables iputils-ping  # lab namespaces, bridges, faults
  procps psmisc                   # process inspection in the lab
  stress-ng                       # load faults
  fence-agents                    # fence_kdump_send, fence_ipmilan, fence_dummy
  openipmi ipmitool               # simulated BMCs
  resource-agents                 # OCF resource agents
  busybox-static cpio xz-utils binutils  # tiny guest images (real tier)
  lintian man-db systemd          # the package test: lintian, man -w, systemd-analyze verify
  systemd-container               # lab-systemd: systemd as PID 1 of a container (systemd-nspawn)
)

# libvirt and QEMU come from Debian's bookworm-backports suite: this machine's
# qemu-utils 10.x conflicts with stable's qemu-system 7.2. The suite is added from the
# machine's own entry for the main suite, so no address is written here.
backports_packages=(
  libvirt-dev libvirt0                       # the virt crate
  libvirt-daemon libvirt-daemon-driver-qemu  # a libvirtd per lab host
  libvirt-clients                            # virsh
  qemu-system-x86                            # real-tier guests (TCG)
)
backports_list=/etc/apt/sources.list.d/hvcluster-backports.sources

add_backports() {
  [[ -e $backports_list ]] && return 0
  if [[ -e /etc/apt/sources.list.d/debian.sources ]]; then
    awk 'BEGIN { RS = ""; ORS = "\n\n" } /\nSuites:[^\n]*bookworm( |\n|$)/' \
      /etc/apt/sources.list.d/debian.sources |
      sed 's/^Suites:.*/Suites: bookworm-backports/' >"$backports_list"
  elif [[ -e /etc/apt/sources.list ]]; then
    grep -E '^deb .* bookworm( |$)' /etc/apt/sources.list | head -1 |
      sed 's/ bookworm / bookworm-backports /; s/ bookworm$/ bookworm-backports/' \
        >/etc/apt/sources.list.d/hvcluster-backports.list
    backports_list=/etc/apt/sources.list.d/hvcluster-backports.list
  fi
  if [[ ! -s $backports_list ]]; then
    echo "install-deps: cannot find this machine's bookworm entry to add bookworm-backports" >&2
    exit 1
  fi
}

missing=()
for p in "${packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

missing_bpo=()
for p in "${backports_packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null | grep -q "install ok installed .*bpo"; then
    missing_bpo+=("$p")
  fi
done

if ((${#missing[@]} + ${#missing_bpo[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages (${missing[*]} ${missing_bpo[*]}); run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  ((${#missing_bpo[@]})) && add_backports
  apt-get update -qq
  if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ((${#missing_bpo[@]})); then
    echo "install-deps: installing ${missing_bpo[*]} from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing_bpo[@]}" >/dev/null
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is not installed; install a Rust toolchain (1.85 or newer)" >&2
  exit 1
fi

# The Debian packages (scripts/package.sh) are built by cargo-deb, from the crate registry.
if ! cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3\.8\.0'; then
  echo "install-deps: installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0 --quiet
fi

# The fuzz targets (scripts/fuzz.sh) run under cargo-fuzz, from the crate registry.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13' --quiet
fi
