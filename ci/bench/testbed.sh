#!/usr/bin/env bash
# Benchmark: how long the local test bed takes to come up with its binaries
# cached, and its peak memory (sum of each process's peak RSS, VmHWM).
#   ci/bench/testbed.sh [ROUNDS] [--azure]   (default 3; --azure adds Azurite and lowkey-vault)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rounds=${1:-3}
azure=${2:-}
cargo build -q
bin=target/debug/vdrill
# A ledger of its own, so `down` touches only the bench's bed; provisioning is not timed.
VDRILL_BEDS_DIR=$(mktemp -d)
export VDRILL_BEDS_DIR VDRILL_NO_PROVISION=1
trap '$bin testbed down >/dev/null 2>&1; rm -rf "$VDRILL_BEDS_DIR"' EXIT
printf '%-6s %10s %14s  %s\n' round "up (s)" "peak RSS (MiB)" "per process (MiB)"
for i in $(seq 1 "$rounds"); do
  t0=$(date +%s.%N)
  $bin testbed up $azure >/dev/null 2>&1
  t1=$(date +%s.%N)
  # Let the processes settle into steady state before reading their peaks.
  sleep 5
  total=0; detail=""
  for row in $(jq -r '.processes[] | "\(.name)=\(.pid)"' "$VDRILL_BEDS_DIR"/*.json); do
    name=${row%=*}; pid=${row#*=}
    # The peak of the process group: the process and what it started.
    kb=0
    for p in $(pgrep -g "$pid" || echo "$pid"); do
      v=$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)
      kb=$((kb + ${v:-0}))
    done
    total=$((total + kb)); detail+="$name=$((kb / 1024)) "
  done
  printf '%-6s %10.2f %14d  %s\n' "$i" "$(echo "$t1 - $t0" | bc)" "$((total / 1024))" "$detail"
  $bin testbed down >/dev/null
done
