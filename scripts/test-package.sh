#!/usr/bin/env bash
# Tests the Debian packages as an operator gets them: builds them (scripts/package.sh),
# runs lintian (no errors allowed), then installs each with dpkg into a fresh root and
# checks what it installed: the programs run, the man pages and completions are there,
# the unit passes `systemd-analyze verify` (its programs and man pages exist), it is
# enabled, the /etc/hvcluster skeleton passes `hvctl config check` once given its keys,
# and purging removes it all; then runs the commands of docs/install.md marked for it.
#
# The fresh root is this machine's own file system seen through a private mount
# namespace, with a throw-away layer over /etc, /usr, /var and /run: dpkg, its
# maintainer scripts and systemctl write there, and nothing outside changes. The network
# namespace is private too, so the firewall rules of the install guide load there only.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}

if [[ ${1:-} != --inside ]]; then
  scripts/package.sh
  lintian --fail-on error "$target"/debian/hvcluster-{host,guest}_*.deb
  scratch=$(mktemp -d /tmp/hvcluster-pkgtest.XXXXXX)
  status=0
  unshare --mount --net --propagation private "$0" --inside "$scratch" || status=$?
  rmdir "$scratch"
  exit "$status"
fi

# Inside the private mount and network namespaces.
scratch=$2
mount -t tmpfs hvpkgtest "$scratch"
for d in etc usr var run; do
  mkdir -p "$scratch/$d.upper" "$scratch/$d.work"
  mount -t overlay hvpkgtest -o "lowerdir=/$d,upperdir=$scratch/$d.upper,workdir=$scratch/$d.work" "/$d"
done

fail() {
  echo "test-package: $*" >&2
  exit 1
}
export DEBIAN_FRONTEND=noninteractive

check_package() {
  local pkg=$1 daemon=$2 unit=$3 config=$4
  shift 4
  [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] &&
    fail "$pkg is installed on this machine already"
  dpkg -i "$target"/debian/"$pkg"_*.deb >/dev/null ||
    fail "dpkg -i $pkg failed"
  for program in "$@"; do
    "/usr/sbin/$program" --version >/dev/null || fail "$program --version failed"
    man -w "$program" >/dev/null || fail "no man page for $program"
    [[ -s /usr/share/bash-completion/completions/$program ]] || fail "no bash completion for $program"
    [[ -s /usr/share/zsh/vendor-completions/_$program ]] || fail "no zsh completion for $program"
    [[ -s /usr/share/fish/vendor_completions.d/$program.fish ]] || fail "no fish completion for $program"
  done
  man -w hvctl-vm-migrate >/dev/null || fail "no man page for hvctl vm migrate"
  systemd-analyze verify "/usr/lib/systemd/system/$unit" || fail "systemd-analyze verify $unit"
  [[ -L /etc/systemd/system/multi-user.target.wants/$unit ]] || fail "$unit is not enabled"
  getent group hvcluster >/dev/null || fail "$pkg did not create group hvcluster"
  [[ -s /usr/share/doc/$pkg/install.md ]] || fail "no install.md in /usr/share/doc/$pkg"
  [[ -s /usr/share/doc/$pkg/img/failover-path.svg ]] || fail "no pictures in /usr/share/doc/$pkg/img"
  [[ -s /usr/share/doc/$pkg/changelog.Debian.gz ]] || fail "no changelog in /usr/share/doc/$pkg"
  dpkg-query --control-show "$pkg" conffiles | grep -q "/etc/hvcluster/$config.example" ||
    fail "/etc/hvcluster/$config.example is not a conffile"

  # The skeleton is a valid configuration once its keys are there.
  cp "/etc/hvcluster/$config.example" "/etc/hvcluster/$config"
  head -c 32 /dev/urandom >/etc/hvcluster/"${config%.toml}".key
  echo secret >/etc/hvcluster/ipmi.pass
  chmod 600 /etc/hvcluster/*.key /etc/hvcluster/ipmi.pass
  hvctl config check "/etc/hvcluster/$config" || fail "the $config skeleton does not pass hvctl config check"
  rm -f "/etc/hvcluster/$config" /etc/hvcluster/*.key /etc/hvcluster/ipmi.pass

  dpkg --purge "$pkg" >/dev/null || fail "dpkg --purge $pkg failed"
  [[ ! -e /usr/sbin/$daemon && ! -e /usr/lib/systemd/system/$unit && ! -e /etc/hvcluster/$config.example ]] ||
    fail "purging $pkg left files behind"
  [[ ! -e /etc/systemd/system/multi-user.target.wants/$unit ]] || fail "purging $pkg left $unit enabled"
  echo "test-package: $pkg: installed, checked and purged"
}

# The ```sh blocks of docs/install.md marked <!-- test-package: $1 -->, in order.
guide_blocks() {
  awk -v tag="<!-- test-package: $1 -->" '
    $0 == tag { armed = 1; next }
    armed && /^```sh/ { inside = 1; armed = 0; next }
    inside && /^```/ { inside = 0; next }
    inside { print }
  ' docs/install.md
}

# Runs the install guide's commands for a hypervisor (host) or a guest, verbatim, in the
# directory of the packages as the guide says, then removes what they installed.
run_guide() {
  local part=$1 pkg=$2 script
  script=$(guide_blocks "$part")
  [[ -n $script ]] || fail "docs/install.md has no commands marked for $part"
  (cd "$target/debian" && bash -euo pipefail -c "$script") ||
    fail "a command of docs/install.md ($part) failed"
  dpkg --purge "$pkg" >/dev/null || fail "dpkg --purge $pkg failed"
  rm -rf /etc/hvcluster /etc/systemd/system/hv-guestd.service.d
  echo "test-package: docs/install.md: every command marked for $part ran"
}

check_package hvcluster-host hv-hostd hv-hostd.service cluster.toml hv-hostd hvctl hv-guest
run_guide host hvcluster-host
check_package hvcluster-guest hv-guestd hv-guestd.service guest.toml hv-guestd hvctl
run_guide guest hvcluster-guest
