#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, the seeded
# simulations, every lab scenario with real processes in network namespaces, the Debian
# packages, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --quiet --workspace --all-targets -- -D warnings
# The lab tests start the real binaries; build them first.
cargo build --quiet --workspace --bins
cargo test --workspace
# The Debian packages: built, lintian, installed into a fresh root with the install guide.
scripts/test-package.sh
# Every decoder of outside input, fuzzed for a bounded time (scripts/fuzz.sh --seconds).
scripts/fuzz.sh
