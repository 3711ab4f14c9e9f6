#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (decoders of outside input) for a bounded time each,
# with cargo-fuzz on the stable toolchain (no sanitizer: `-s none`), debug assertions
# and overflow checks on. Fails if any target crashed (or hung), naming the input that
# did it and how to reproduce it. See docs/security.md, "Fuzzing".
#
#   scripts/fuzz.sh [--seconds N] [--list] [TARGET...]
#
# --seconds N  how long each target runs (default 10)
# --list       print the targets and exit
# TARGET...    only these targets (default: all)
#
# Inputs that reach new code are kept in fuzz/corpus/TARGET (not committed) and used
# again by the next run; the committed seeds are in fuzz/seeds/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
targets=()
all_targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hvcluster-fuzz$'
}
while (($#)); do
  case $1 in
    --seconds)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds needs a number of seconds" >&2; exit 2; }
      seconds=$2
      shift 2
      ;;
    --list) all_targets; exit 0 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || mapfile -t targets < <(all_targets)
for t in "${targets[@]}"; do
  all_targets | grep -qx "$t" || { echo "fuzz.sh: no fuzz target $t (see --list)" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed; run scripts/install-deps.sh (it runs: cargo install cargo-fuzz --locked)" >&2
  exit 1
fi

# The configuration targets write their key files under TMPDIR: keep them in one place
# that goes away afterwards.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

echo "fuzz: building the fuzz targets"
cargo fuzz build -s none >"$scratch/build.log" 2>&1 || {
  cat "$scratch/build.log" >&2
  echo "fuzz.sh: the fuzz targets do not build" >&2
  exit 1
}

passed=0
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  corpora=("fuzz/corpus/$t")
  [[ -d fuzz/seeds/$t ]] && corpora+=("fuzz/seeds/$t")
  log=$scratch/$t.log
  # -timeout: one input taking this long is a bug (a hang) too.
  if cargo fuzz run -s none "$t" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: $t: ${runs:-?} inputs in ${seconds} s, no crash"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    tail -40 "$log" >&2
    artifact=$(grep -o 'fuzz/artifacts/[^ ]*' "$log" | tail -1 || true)
    echo "fuzz: $t FAILED${artifact:+ on $artifact}; reproduce with:" >&2
    echo "  cargo fuzz run -s none $t ${artifact:-fuzz/artifacts/$t/FILE}" >&2
    echo "then add the input as a unit test in common/ and fix the decoder" >&2
  fi
done
echo "fuzz: ${passed} passed, ${failed} failed"
((failed == 0))
