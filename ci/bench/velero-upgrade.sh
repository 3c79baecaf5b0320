#!/usr/bin/env bash
# Benchmark: building a Velero version nobody pinned (from the Go module proxy, with
# the plugins of its documented lines), and the upgrade drills' wall times.
#   ci/bench/velero-upgrade.sh [VERSION]   (default 1.18.2; must not be pinned)
# The version's build is removed from the cache first, so it is built again; the Go
# module and build caches stay warm (as on a machine that built the pinned versions).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
version=v${1:-1.18.2}; version=v${version#v}
source ci/testbed/versions.env
if [[ " $VELERO_VERSIONS " == *" $version:"* ]]; then
  echo "$version is pinned; name one that is not" >&2; exit 2
fi
cache=${VDRILL_CACHE:-$HOME/.cache/vdrill}
rm -rf "${cache:?}/velero/$version"
t0=$(date +%s.%N)
ci/testbed/setup.sh "velero@$version" >/dev/null
printf 'build velero %s on demand: %.1fs\n' "$version" "$(echo "$(date +%s.%N) - $t0" | bc)"
cargo build -q
out=$(mktemp -d)
for s in velero-upgrade velero-upgrade-key-rotated; do
  CI=1 "${CARGO_TARGET_DIR:-target}/debug/vdrill" run "scenarios/$s.yaml" --matrix from=1.17 --matrix to=1.18 --artifacts "$out/$s" >/dev/null 2>&1 || true
  jq -r '.cells[] | [.id, .status, .duration, (.rto // 0)] | @tsv' "$out/$s/run.json" |
    while IFS=$'\t' read -r id status total rto; do
      printf '%-44s %-8s total %6.1fs  RTO %5.1fs\n' "$id" "$status" "$total" "$rto"
    done
done
echo "artifacts: $out"
