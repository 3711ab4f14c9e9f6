#!/usr/bin/env bash
# The lab demo: three simulated hypervisors and a two-VM guest cluster; a host panics, is
# fenced, and its guest's application comes Online on the partner guest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --workspace --bins
exec target/debug/hvlab demo
