#!/usr/bin/env bash
# Benchmark: each shipped drill on the local test bed (one Velero version),
# its total time and the share spent inside vdrill itself (vdrill's CPU time
# over the wall time; the rest is waiting on Velero, Kubernetes and the emulators).
#   ci/bench/drills.sh [VELERO_MINOR]   (default 1.18)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
velero=${1:-1.18}
cargo build -q
out=$(mktemp -d)
printf '%-28s %-8s %9s %9s %10s %8s\n' drill result "total(s)" "RTO(s)" "vdrill(s)" "share"
for s in aws-kms-basic aws-kms-disable-midrun aws-kms-rotate aws-kms-pending-deletion aws-sse-c azure-keyvault-basic azure-keyvault-rotate azure-keyvault-soft-delete gcp-kms-basic multi-cloud; do
  CI=1 target/debug/vdrill run "scenarios/$s.yaml" --matrix velero="$velero" --artifacts "$out/$s" >/dev/null 2>&1 || true
  jq -r '.cells[] | 
    [.scenario, .status, .duration, (.rto // 0), .overhead, (100 * .overhead / .duration)] |
    @tsv' "$out/$s/run.json" |
    while IFS=$'\t' read -r name status total rto own share; do
      printf '%-28s %-8s %9.1f %9.1f %10.2f %7.2f%%\n' "$name" "$status" "$total" "$rto" "$own" "$share"
    done
done
echo "artifacts: $out"
