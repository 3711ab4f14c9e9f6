#!/usr/bin/env bash
# Installs every system package hvcluster needs on a fresh Debian 12 machine (as root).
# Quick and quiet when everything is already there.
set -euo pipefail

packages=(
  pkg-config libvirt-dev          # the virt crate
  libvirt-daemon libvirt-clients  # a libvirtd per lab host (test driver), virsh
  iproute2 nftables iputils-ping  # lab namespaces, bridges, faults
  procps psmisc                   # process inspection in the lab
  stress-ng                       # load faults
  fence-agents                    # fence_kdump_send, fence_ipmilan, fence_dummy
  openipmi ipmitool               # simulated BMCs
  resource-agents                 # OCF resource agents
  busybox-static cpio             # tiny guest images
)

missing=()
for p in "${packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is not installed; install a Rust toolchain (1.85 or newer)" >&2
  exit 1
fi
