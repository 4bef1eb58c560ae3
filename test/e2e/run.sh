#!/usr/bin/env bash
# The kind end-to-end test, one command from the repository root:
#
#   test/e2e/run.sh
#
# Needs docker (a running daemon), kind, kubectl and helm; where one is missing it prints one
# line, `e2e skipped: <tool> not found (...)`, and exits 3, so a caller can tell "skipped"
# from "passed" (0) and "failed" (anything else).
#
# What it proves, against a real cluster:
#   1. the image builds and both plugins start from the chart (helm install --wait);
#   2. a small real model (a valid safetensors file, config.json, tokenizer.json, a nested
#      dir), pushed as a ModelPack artifact with oras to a registry:2 on the kind network,
#      is mounted into a pod through an inline volume with the same sha256 for every file,
#      and the mount refuses writes (the container mount itself is not readOnly);
#   3. a PVC from the chart's StorageClass is pinned to the manifest digest and serves two
#      pods (spread over both nodes when possible) with the same digests;
#   4. after the pods, the PVC and the release are deleted, no CSI mount is left on any node.
#
# Env: KEEP_CLUSTER=1 keeps the cluster and registry (and prints how to remove them);
# E2E_CLUSTER (model-csi-e2e), KIND_NODE_IMAGE, E2E_IMAGE (model-csi:e2e), E2E_TIMEOUT (300s).
set -euo pipefail

for tool in docker kind kubectl helm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "e2e skipped: $tool not found (needs docker, kind, kubectl, helm)"
    exit 3
  fi
done
if ! docker info >/dev/null 2>&1; then
  echo "e2e skipped: docker daemon not reachable (needs docker, kind, kubectl, helm)"
  exit 3
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$ROOT/test/e2e"
# shellcheck source=test/e2e/lib.sh
source "$E2E/lib.sh"

CLUSTER="${E2E_CLUSTER:-model-csi-e2e}"
CONTEXT="kind-$CLUSTER"
REGISTRY="$CLUSTER-registry"
IMAGE="${E2E_IMAGE:-model-csi:e2e}"
TIMEOUT="${E2E_TIMEOUT:-300s}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
RELEASE=model-csi
DRIVER_NS=model-csi
TEST_NS=model-csi-e2e
STORAGE_CLASS=e2e-model
KUBELET_PODS=/var/lib/kubelet/pods
CACHE_ROOT=/var/lib/model-csi
# Pinned helper images: the registry the model is pushed to, oras to push it, and the
# reader pods' image (which has sha256sum and touch).
REGISTRY_IMAGE=registry:2.8.3
ORAS_IMAGE=ghcr.io/oras-project/oras:v1.2.0
BUSYBOX=busybox:1.36.1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/model-csi-e2e.XXXXXX")"
chmod 755 "$WORK"

log() { printf 'e2e: %s\n' "$*"; }
fail() {
  printf 'e2e: FAIL: %s\n' "$*" >&2
  exit 1
}
k() { kubectl --context "$CONTEXT" "$@"; }

created_cluster=0
created_registry=0
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && [ "$created_cluster" = 1 ]; then
    log "diagnostics (exit $rc)"
    k get nodes,csinodes,csidrivers,sc,pv -o wide
    k get pods -A -o wide
    k -n "$TEST_NS" describe pods,pvc
    k -n "$DRIVER_NS" logs -l "app.kubernetes.io/instance=$RELEASE" --all-containers --prefix --tail=200
  fi
  if [ "$KEEP_CLUSTER" = 1 ]; then
    log "KEEP_CLUSTER=1: kept. Remove with: kind delete cluster --name $CLUSTER; docker rm -f $REGISTRY"
  else
    [ "$created_cluster" = 1 ] && kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
    [ "$created_registry" = 1 ] && docker rm -f "$REGISTRY" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# csi_mounts NODE: how many mounts on NODE sit in a pod's CSI volume dir or come from the
# driver's cache (mountinfo field 4 is the mounted root inside its filesystem, field 5 the
# mount point).
csi_mounts() {
  docker exec "$1" awk -v pods="$KUBELET_PODS/" -v cache="$CACHE_ROOT/" '
    index($5, pods) == 1 && (index($5, "/volumes/kubernetes.io~csi/") > 0 || index($4, cache) > 0) { n++ }
    END { print n + 0 }' /proc/self/mountinfo
}

# render MANIFEST: the manifest with its placeholders filled in.
render() {
  sed -e "s|__BUSYBOX__|$BUSYBOX|g" -e "s|__REFERENCE__|$REFERENCE|g" -e "s|__STORAGE_CLASS__|$STORAGE_CLASS|g" "$E2E/manifests/$1"
}

# ---- cluster and registry ---------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  fail "a kind cluster named $CLUSTER exists (KEEP_CLUSTER from an earlier run?): kind delete cluster --name $CLUSTER"
fi
log "creating kind cluster $CLUSTER"
created_cluster=1
kind create cluster --name "$CLUSTER" --config "$E2E/kind-config.yaml" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
mapfile -t NODES < <(kind get nodes --name "$CLUSTER")

log "starting $REGISTRY_IMAGE as $REGISTRY on the kind network"
docker rm -f "$REGISTRY" >/dev/null 2>&1 || true
created_registry=1
docker run -d --name "$REGISTRY" --network kind "$REGISTRY_IMAGE" >/dev/null
# Pods reach it by IP: no DNS for docker container names is assumed inside the cluster.
REGISTRY_IP="$(docker inspect -f '{{ (index .NetworkSettings.Networks "kind").IPAddress }}' "$REGISTRY")"
[ -n "$REGISTRY_IP" ] || fail "registry has no address on the kind network"
REGISTRY_HOST="$REGISTRY_IP:5000"

# ---- image ------------------------------------------------------------------------------
log "building $IMAGE"
DOCKER_BUILDKIT=1 docker build -t "$IMAGE" "$ROOT"
docker pull -q "$BUSYBOX" >/dev/null
kind load docker-image --name "$CLUSTER" "$IMAGE" "$BUSYBOX"

# ---- model ------------------------------------------------------------------------------
log "pushing a ModelPack artifact to $REGISTRY_HOST"
make_model "$WORK/model"
for _ in $(seq 30); do
  docker run --rm --network kind "$ORAS_IMAGE" repo ls --plain-http "$REGISTRY:5000" >/dev/null 2>&1 && break
  sleep 1
done
# oras runs in a container on the kind network, where the registry's name resolves.
DIGEST="$(push_model "$WORK/model" "$REGISTRY:5000/models/e2e-tiny:v1" \
  docker run --rm --network kind -v "$WORK/model:/workspace" -w /workspace "$ORAS_IMAGE")"
[ -n "$DIGEST" ] || fail "oras push printed no digest"
REFERENCE="$REGISTRY_HOST/models/e2e-tiny:v1"
log "pushed $REFERENCE@$DIGEST"

# ---- install ----------------------------------------------------------------------------
cat >"$WORK/values.yaml" <<EOF
image:
  repository: ${IMAGE%:*}
  tag: ${IMAGE##*:}
  pullPolicy: Never
logLevel: debug
publishWaitSeconds: 30
registries:
  "$REGISTRY_HOST":
    insecure: true
storageClasses:
  - name: $STORAGE_CLASS
    reference: $REFERENCE
EOF
log "helm install $RELEASE"
helm --kube-context "$CONTEXT" install "$RELEASE" "$ROOT/deploy/helm/model-csi" \
  --namespace "$DRIVER_NS" --create-namespace -f "$WORK/values.yaml" --wait --timeout "$TIMEOUT"
for node in "${NODES[@]}"; do
  for _ in $(seq 60); do
    k get csinode "$node" -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -qw model.csi.example.org && continue 2
    sleep 2
  done
  fail "the driver never registered with kubelet on $node"
done
log "driver registered on ${#NODES[@]} nodes"
k create namespace "$TEST_NS" >/dev/null

# ---- inline volume ----------------------------------------------------------------------
render inline-pod.yaml | k -n "$TEST_NS" apply -f - >/dev/null
render inline-unmarked-pod.yaml | k -n "$TEST_NS" apply -f - >/dev/null
k -n "$TEST_NS" wait --for=condition=Ready pod/inline-reader pod/inline-unmarked --timeout "$TIMEOUT"
for pod in inline-reader inline-unmarked; do
  check_digests "$pod"
  check_read_only "$pod"
done

# ---- PVC shared by two pods -------------------------------------------------------------
render pvc-pods.yaml | k -n "$TEST_NS" apply -f - >/dev/null
k -n "$TEST_NS" wait --for=jsonpath='{.status.phase}'=Bound pvc/model --timeout "$TIMEOUT"
k -n "$TEST_NS" wait --for=condition=Ready pod/pvc-reader-a pod/pvc-reader-b --timeout "$TIMEOUT"
PV="$(k -n "$TEST_NS" get pvc model -o jsonpath='{.spec.volumeName}')"
k get pv "$PV" -o jsonpath='{.spec.csi}' | grep -q "${DIGEST#sha256:}" ||
  fail "PV $PV does not name the manifest digest $DIGEST (the tag was not pinned): $(k get pv "$PV" -o jsonpath='{.spec.csi}')"
log "PV $PV is pinned to $DIGEST"
for pod in pvc-reader-a pvc-reader-b; do
  check_digests "$pod"
  check_read_only "$pod"
done
log "pvc readers on nodes: $(k -n "$TEST_NS" get pods -l pvc=model -o jsonpath='{.items[*].spec.nodeName}')"

# ---- uninstall leaves no mounts ---------------------------------------------------------
total=0
for node in "${NODES[@]}"; do total=$((total + $(csi_mounts "$node"))); done
# The same count that must reach 0 below sees the three live volumes now.
[ "$total" -ge 4 ] || fail "expected at least 4 CSI mounts while the pods run, the check counted $total"
log "$total CSI mounts while the pods run"

k -n "$TEST_NS" delete pod --all --wait --timeout "$TIMEOUT" >/dev/null
delete_claim model "$PV"
helm --kube-context "$CONTEXT" uninstall "$RELEASE" --namespace "$DRIVER_NS" --wait --timeout "$TIMEOUT" >/dev/null
for node in "${NODES[@]}"; do
  left="$(csi_mounts "$node")"
  [ "$left" -eq 0 ] || {
    docker exec "$node" grep -e "$KUBELET_PODS/" /proc/self/mountinfo | grep -e 'kubernetes.io~csi' -e "$CACHE_ROOT/" >&2
    fail "$left CSI mounts left on $node after uninstall"
  }
done
k get csidriver model.csi.example.org >/dev/null 2>&1 && fail "CSIDriver left after helm uninstall"
log "no CSI mounts left on ${NODES[*]}"
log "PASS"
