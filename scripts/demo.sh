#!/usr/bin/env bash
# The lab demo: three simulated hypervisors, one loses power, the others detect and fence it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --workspace --bins
exec target/debug/hvlab demo
