#!/usr/bin/env bash
# The local-cluster e2e in one command (as root): up.sh, e2e.sh, then down.sh whatever
# happened. CI runs it after the unit and integration suites. Fails, never skips, when the
# cluster cannot start.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
started=$SECONDS
down() {
  local rc=$?
  "$ROOT/test/cluster/down.sh" || rc=1
  echo "cluster e2e: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
  exit "$rc"
}
trap down EXIT
"$ROOT/test/cluster/up.sh" | tee -a /dev/stderr >"${TMPDIR:-/tmp}/model-csi-cluster-up.out"
up_done=$SECONDS
eval "$(grep -E '^(KUBECONFIG|REGISTRY|TEST_IMAGE)=' "${TMPDIR:-/tmp}/model-csi-cluster-up.out" | sed 's/^/export /')"
"$ROOT/test/cluster/e2e-model-cache.sh"
"$ROOT/test/cluster/e2e.sh"
echo "cluster e2e: up $((up_done - started)) s, scenarios $((SECONDS - up_done)) s"
