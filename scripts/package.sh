#!/usr/bin/env bash
# Builds the Debian packages into target/debian/:
#   hvcluster-host   hv-hostd, hvctl, hv-guest, the hv-hostd unit   (every hypervisor)
#   hvcluster-guest  hv-guestd, hvctl, the hv-guestd unit            (every clustered VM)
# with man pages and bash, zsh and fish completions written by the programs from their
# own command-line definitions, the docs and example configurations under
# /usr/share/doc/PACKAGE/, and commented skeletons in /etc/hvcluster/.
# Needs cargo-deb (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
out=$target/debian

cargo build --release --locked --bins \
  -p hvcluster-host-agent -p hvcluster-guest-agent -p hvctl -p hvcluster-cmdline-resources

gen=$target/release/hvcluster-docs
rm -rf "$gen"
# The programs of each package write their own man pages and completions.
for program in hv-hostd hvctl hv-guest; do
  HVCLUSTER_WRITE_DOCS=$gen/host "$target/release/$program"
done
for program in hv-guestd hvctl; do
  HVCLUSTER_WRITE_DOCS=$gen/guest "$target/release/$program"
done

# The first ```toml block after the heading $2 of the document $1.
example() {
  awk -v heading="$2" '
    $0 == heading { found = 1; next }
    found && /^```toml/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { print }
  ' "$1"
}

for pkg in host guest; do
  gzip -9n "$gen/$pkg"/man/*.8
  mkdir -p "$gen/$pkg/doc" "$gen/$pkg/img" "$gen/$pkg/examples"
  cp docs/*.md "$gen/$pkg/doc/"
  cp docs/img/*.svg "$gen/$pkg/img/"
done
example docs/configuration.md "## Complete example: three hosts, two interconnects" \
  >"$gen/host/examples/cluster.toml"
example docs/guest-configuration.md "## A complete example" >"$gen/guest/examples/guest.toml"
for f in "$gen/host/examples/cluster.toml" "$gen/guest/examples/guest.toml"; do
  if [[ ! -s $f ]]; then
    echo "package: no example configuration found for $f in docs/" >&2
    exit 1
  fi
done

mkdir -p "$out"
rm -f "$out"/hvcluster-host_*.deb "$out"/hvcluster-guest_*.deb
cargo deb --no-build --strip --locked -p hvcluster-host-agent -o "$out" >/dev/null
cargo deb --no-build --strip --locked -p hvcluster-guest-agent -o "$out" >/dev/null
ls -1 "$out"/hvcluster-*.deb
