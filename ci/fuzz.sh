#!/usr/bin/env bash
# Fuzz the scenario loader for N seconds (default 60) with cargo fuzz;
# `ci/fuzz.sh --build` only builds the fuzz target.
# The fuzz build lives in the cache folder so CI reuses it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds=${1:-60}
cache=${VDRILL_CACHE:-$HOME/.cache/vdrill}
export CARGO_TARGET_DIR=$cache/fuzz-target
corpus=$cache/fuzz-corpus/scenario_loader
mkdir -p "$corpus"
if [[ $seconds == --build ]]; then
  # Only the build (what `fuzz run` would build first), so that it can run beside the tests.
  exec cargo +nightly fuzz build scenario_loader
fi
cargo +nightly fuzz run scenario_loader "$corpus" seeds -- -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | tail -20
