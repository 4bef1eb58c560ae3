#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, with the chart installed from the
# working tree (as root; no Docker, nothing pulled from an image registry):
#
#   test/cluster/up.sh
#
# Builds what is missing (Kubernetes v1.32 and csi-provisioner from the Go module proxy, the
# images with mmdebstrap and buildah; cached by version under /var/cache/model-csi), starts
# etcd, containerd, the control plane, kubelet and kube-proxy (test/cluster/lib/node.sh),
# imports the images, starts the e2e registries (lib/registries.sh) and `helm install`s
# deploy/helm/model-csi (lib/release.sh). Safe to run twice. Its last three lines:
#   KUBECONFIG=<path>   REGISTRY=<host:port>   TEST_IMAGE=<image with sh, sha256sum, touch>
# test/cluster/down.sh undoes all of it but the binary cache.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "test/cluster/up.sh: run as root (it starts kubelet and containerd)" >&2
  exit 1
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
gopath=$(go env GOPATH)
export PATH="$gopath/bin:$PATH"
# shellcheck source=test/cluster/lib/node.sh
source "$ROOT/test/cluster/lib/node.sh"
# shellcheck source=test/cluster/lib/images.sh
source "$ROOT/test/cluster/lib/images.sh"
# shellcheck source=test/cluster/lib/registries.sh
source "$ROOT/test/cluster/lib/registries.sh"
# shellcheck source=test/cluster/lib/release.sh
source "$ROOT/test/cluster/lib/release.sh"

for tool in helm oras; do
  command -v "$tool" >/dev/null 2>&1 || { echo "test/cluster/up.sh: $tool not found: run scripts/install-test-deps.sh first" >&2; exit 1; }
done
[ -d node_modules/tsx ] || npm ci --no-audit --no-fund

started=$SECONDS
cluster_build_binaries
images_build_all
CLUSTER_PAUSE_IMAGE=$IMAGE_PAUSE cluster_node_up
images_import ctr --address "$CLUSTER_CONTAINERD_SOCK" -n k8s.io
registries_up
release_install
echo "cluster: up in $((SECONDS - started)) s"
echo "KUBECONFIG=$CLUSTER_KUBECONFIG"
echo "REGISTRY=$REGISTRY"
echo "TEST_IMAGE=$IMAGE_TEST"
