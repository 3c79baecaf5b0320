#!/usr/bin/env bash
# Everything the tests need, on a new machine or an old one (idempotent):
# xmllint (JUnit schema test), cargo-nextest, cargo-fuzz, what the report tests need
# (chromium, junitparser, actionlint: ci/setup-report.sh), and the local test bed
# (built from the package registries into ${VDRILL_CACHE:-$HOME/.cache/vdrill}).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$(date +%s)
say() { printf '[ci/setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v xmllint >/dev/null; then
  say "installing xmllint (libxml2-utils)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml2-utils >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
# The kind test bed (ci/testbed/setup.sh kind-node): Docker engine, debootstrap for the
# node's rootfs, gcc and the static C library for pause, jq.
missing=()
for pair in dockerd:docker.io debootstrap:debootstrap jq:jq gcc:gcc; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
ci/setup-report.sh
ci/testbed/setup.sh "$@"
say "done in $(( $(date +%s) - t0 ))s"
