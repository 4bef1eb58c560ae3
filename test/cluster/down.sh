#!/usr/bin/env bash
# Undoes test/cluster/up.sh, and is safe without it: uninstalls the chart, stops every process
# up.sh started (registries, kubelet, control plane, containerd, etcd, every container) and
# removes every mount, network namespace, interface and iptables rule it made, and its state.
# Left behind: the binary and image cache under /var/cache/model-csi. It ends by listing
# whatever is left (nothing, when it worked) and fails if anything is.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "test/cluster/down.sh: run as root" >&2
  exit 1
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
if command -v go >/dev/null 2>&1; then
  gopath=$(go env GOPATH)
  export PATH="$gopath/bin:$PATH"
fi
# shellcheck source=test/cluster/lib/node.sh
source "$ROOT/test/cluster/lib/node.sh"
# shellcheck source=test/cluster/lib/registries.sh
source "$ROOT/test/cluster/lib/registries.sh"
# shellcheck source=test/cluster/lib/release.sh
source "$ROOT/test/cluster/lib/release.sh"

release_uninstall || echo "down: helm uninstall failed; tearing the node down anyway" >&2
registries_down
made_cache_root=0
[ -f "$CLUSTER_DIR/made-cache-root" ] && made_cache_root=1
cluster_node_down
if [ "$made_cache_root" = 1 ]; then rm -rf "$RELEASE_CACHE_ROOT"; fi
left=$(cluster_leftovers)
if pgrep -f "docker-registry serve $REGISTRY_DIR/|test/cluster/throttle.ts" >/dev/null; then left+=$'\n'"a registry process"; fi
if [ -n "$left" ]; then
  printf 'down: left behind:\n%s\n' "$left" >&2
  exit 1
fi
echo "down: nothing left but the cache in $CLUSTER_CACHE_ROOT"
