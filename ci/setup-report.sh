#!/usr/bin/env bash
# What the report tests need, on a new machine or an old one (idempotent), into
# ${VDRILL_CACHE:-$HOME/.cache/vdrill}, never into the repository:
#
#   chromium    headless browser for the HTML report test (Debian package `chromium`)
#   junitparser a JUnit consumer from PyPI, in a venv at $CACHE/report-venv
#   actionlint  the GitHub Actions workflow checker (Go module), at $CACHE/bin/actionlint
#
# Called by ci/setup.sh; prints where each one is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '[ci/setup-report %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

JUNITPARSER_VERSION=5.0.3
ACTIONLINT_VERSION=v1.7.12

CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
mkdir -p "$CACHE/bin"
CACHE=$(cd "$CACHE" && pwd)

# Chromium: from Debian's packages. Root here and in CI; elsewhere through sudo.
if ! command -v chromium >/dev/null; then
  say "installing chromium (Debian package)"
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { say "chromium is missing and this user is not root and has no sudo"; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
say "chromium: $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"

# junitparser, pinned, in a venv of its own.
venv=$CACHE/report-venv
if ! "$venv/bin/python" -c "import junitparser, sys; sys.exit(junitparser.version != '$JUNITPARSER_VERSION')" 2>/dev/null; then
  say "installing junitparser $JUNITPARSER_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "junitparser==$JUNITPARSER_VERSION"
fi
say "junitparser: $venv/bin/python ($JUNITPARSER_VERSION)"

# actionlint, pinned, built from the Go module proxy.
bin=$CACHE/bin/actionlint
if ! [[ -x $bin ]] || [[ $("$bin" -version 2>/dev/null | head -1) != "$ACTIONLINT_VERSION" ]]; then
  say "building actionlint $ACTIONLINT_VERSION"
  GOBIN=$CACHE/bin GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
say "actionlint: $bin ($("$bin" -version | head -1))"
