#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, the seeded
# simulations, and every lab scenario with real processes in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --quiet --workspace --all-targets -- -D warnings
# The lab tests start the real binaries; build them first.
cargo build --quiet --workspace --bins
cargo test --workspace
