#!/usr/bin/env bash
# The test command: set up what is missing, check the formatting, run every test (unit, runner,
# scenario corpus, JUnit schema, the local test bed and the drills on it),
# then fuzz the scenario loader for a bounded time.
#
#   ci/test.sh                 # everything
#   VDRILL_FUZZ_SECONDS=0 ci/test.sh   # skip the fuzzing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Builds live in the cache folder too, so a fresh clone does not rebuild everything.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${VDRILL_CACHE:-$HOME/.cache/vdrill}/target}

# The tests' build (what nextest builds: `cargo test --no-run`) runs beside the set-up:
# on a new machine both take many minutes, and each waits on the network part of the time.
mkdir -p "$CARGO_TARGET_DIR"
build_log=$CARGO_TARGET_DIR/ci-build.log
cargo test --no-run >"$build_log" 2>&1 &
build=$!
setup_status=0
ci/setup.sh || setup_status=$?
build_status=0
wait "$build" || build_status=$?
if ((build_status)); then
  tail -n 60 "$build_log" >&2
  echo "ci/test.sh: the build failed (exit $build_status; log: $build_log)" >&2
  exit "$build_status"
fi
((setup_status == 0)) || exit "$setup_status"

artifacts=${VDRILL_CI_ARTIFACTS:-$PWD/target/ci-artifacts}
mkdir -p "$artifacts"
export VDRILL_CI_ARTIFACTS=$artifacts

status=0
# One code style: rustfmt's defaults.
cargo fmt --check >/dev/null || { echo "ci/test.sh: the code is not formatted; run cargo fmt" >&2; status=1; }

fuzz_seconds=${VDRILL_FUZZ_SECONDS:-60}
if [[ $fuzz_seconds -gt 0 ]]; then
  # The fuzz build (nightly, sanitizers: about 7 minutes from an empty cache) runs beside
  # the tests at the lowest CPU priority: the drills mostly wait, and it takes that idle
  # time. A failed build shows again when ci/fuzz.sh runs.
  nice -n 19 ci/fuzz.sh --build >"$CARGO_TARGET_DIR/ci-fuzz-build.log" 2>&1 &
  fuzz_build=$!
fi
cargo nextest run --profile ci --no-fail-fast || status=$?
cp "$CARGO_TARGET_DIR/nextest/ci/junit.xml" "$artifacts/nextest-junit.xml" 2>/dev/null || true

if [[ $fuzz_seconds -gt 0 ]]; then
  wait "$fuzz_build" || true
  ci/fuzz.sh "$fuzz_seconds" || status=$?
fi
echo "artifacts: $artifacts"
exit $status
