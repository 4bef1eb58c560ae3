# shellcheck shell=bash
# The chart, installed from the working tree as a user installs it: only the image values
# (the locally built driver and csi-provisioner images), the registry values (the e2e
# registries, plain HTTP, so named `insecure`) and the kubelet value (this node's kubelet dir)
# differ from the defaults. Sourced after node.sh, registries.sh and images.sh.

RELEASE=model-csi
RELEASE_NS=model-csi
RELEASE_CHART=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/deploy/helm/model-csi
# The chart's default cache root: the cache stays after `helm uninstall`; down.sh removes it
# only when up.sh made it.
RELEASE_CACHE_ROOT=/var/lib/model-csi
RELEASE_TIMEOUT=${RELEASE_TIMEOUT:-300s}

_relog() { echo "release: $*" >&2; }

release_install() {
  local values=$CLUSTER_DIR/release-values.yaml
  [ -e "$RELEASE_CACHE_ROOT" ] || { mkdir -p "$CLUSTER_DIR" && touch "$CLUSTER_DIR/made-cache-root"; }
  cat >"$values" <<VALUES
image:
  repository: ${IMAGE_DRIVER%:*}
  tag: ${IMAGE_DRIVER##*:}
  pullPolicy: Never
sidecars:
  provisioner:
    image:
      repository: ${IMAGE_PROVISIONER%:*}
      tag: ${IMAGE_PROVISIONER##*:}
      pullPolicy: Never
kubeletDir: $CLUSTER_KUBELET_DIR
registries:
  "$REGISTRY": {insecure: true}
  "$REGISTRY_SLOW": {insecure: true}
  "$REGISTRY_AUTH": {insecure: true}
VALUES
  _relog "helm upgrade --install $RELEASE (image $IMAGE_DRIVER)"
  helm upgrade --install "$RELEASE" "$RELEASE_CHART" --namespace "$RELEASE_NS" --create-namespace \
    -f "$values" --wait --timeout "$RELEASE_TIMEOUT" >/dev/null
  local i
  for i in $(seq 60); do
    kubectl get csinode "$CLUSTER_NODE_NAME" -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -qw model.csi.example.org && break
    [ "$i" = 60 ] && { _relog "kubelet never registered the driver"; return 1; }
    sleep 1
  done
  _relog "installed; kubelet registered model.csi.example.org"
}

# Safe without a cluster or a release.
release_uninstall() {
  [ -s "$CLUSTER_KUBECONFIG" ] || return 0
  kubectl get --raw /readyz >/dev/null 2>&1 || return 0
  helm status "$RELEASE" --namespace "$RELEASE_NS" >/dev/null 2>&1 || return 0
  helm uninstall "$RELEASE" --namespace "$RELEASE_NS" --wait --timeout "$RELEASE_TIMEOUT" >/dev/null
  # --wait waits for the workloads to go, not for their pods: wait for those, their
  # processes and their volume mounts (kubelet tears those down after the containers stop).
  kubectl -n "$RELEASE_NS" wait --for=delete pod -l "app.kubernetes.io/instance=$RELEASE" --timeout "$RELEASE_TIMEOUT" >/dev/null 2>&1 || true
  local i
  for i in $(seq 60); do
    pgrep -f 'dist/main.js (node|controller)' >/dev/null || grep -q " $CLUSTER_KUBELET_DIR/pods/" /proc/self/mountinfo || break
    sleep 1
  done
  _relog "uninstalled $RELEASE"
}
