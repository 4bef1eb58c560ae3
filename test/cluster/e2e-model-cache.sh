#!/usr/bin/env bash
# ModelCache on the local single-node cluster (as root), after up.sh and before e2e.sh (which
# uninstalls the chart). Against the real API server, kubelet and node plugin:
#   1. the CRD refuses a misspelt field at apply time;
#   2. warm, then mount: a ModelCache selecting the node warms it (Pulling, then Ready with the
#      digest; the controller's summary says 1/1); a pod then mounts the model and the registry
#      (behind the counting throttle) serves no blob for it;
#   3. a pod's own pull: `kubectl describe pod` shows Pulling, then Pulled with the digest;
#   4. failures: a missing tag and a registry that refuses are Failed with the reason; the same
#      cache with a pullSecretRef is Ready;
#   5. two node plugins (the DaemonSet's, and a second process with another --node-id and the
#      admin kubeconfig) each write their own status entry; neither clobbers the other;
#   6. pins under pressure, on the second plugin (cache budget 2.5 MiB, 1 MiB models): the
#      pinned model stays while unpinned ones are evicted; a pin that cannot fit is Failed with
#      RESOURCE_EXHAUSTED and evicts no pin; deleting the pinned cache lets the budget evict it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=test/cluster/lib/e2e-env.sh
source "$ROOT/test/cluster/lib/e2e-env.sh"
TEST_NS=model-csi-e2e-cache
REGISTRY_AUTH_PASSWORD=$(cat "$REGISTRY_DIR/auth-password")
SECOND_NODE=model-csi-e2e-second-node
WORK="$(mktemp -d "${TMPDIR:-/tmp}/model-csi-cache-e2e.XXXXXX")"
SECOND_ROOT=$WORK/second-root
# Tags of this run only: the node cache outlives a run and remembers what a tag named (IfNotPresent).
RUN=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
started=$SECONDS

log() { printf 'e2e-cache: [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  printf 'e2e-cache: FAIL: %s\n' "$*" >&2
  exit 1
}
k() { kubectl "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    log "diagnostics (exit $rc)"
    k get modelcaches -o yaml | tail -n 150
    k -n "$RELEASE_NS" logs -l "app.kubernetes.io/instance=$RELEASE" --all-containers --prefix --tail=60
    tail -n 60 "$WORK/second.log"
  fi
  stop_second
  k delete modelcaches --all --wait=false >/dev/null 2>&1
  k delete namespace "$TEST_NS" --ignore-not-found --wait=false >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

second_pid=""
stop_second() {
  [ -n "$second_pid" ] || return 0
  kill "$second_pid" 2>/dev/null
  wait "$second_pid" 2>/dev/null
  second_pid=""
  # The plugin makes its staging dir a private mount of its own (LinuxMounter.open).
  umount "$SECOND_ROOT/staging" 2>/dev/null || true
}

# entries CACHE: "node phase digest message" per status entry.
entries() {
  k get modelcache "$1" -o jsonpath='{range .status.nodes[*]}{.node}{"\t"}{.phase}{"\t"}{.digest}{"\t"}{.message}{"\n"}{end}'
}

# wait_entry CACHE NODE PHASE [MESSAGE_REGEX]: until NODE's entry of CACHE has PHASE (and a matching message).
wait_entry() {
  local cache=$1 node=$2 phase=$3 re=${4:-} i line
  for i in $(seq 240); do
    line=$(entries "$cache" | awk -F'\t' -v n="$node" '$1 == n' || true)
    if [ "$(printf '%s' "$line" | cut -f2)" = "$phase" ] && { [ -z "$re" ] || printf '%s' "$line" | cut -f4 | grep -Eq "$re"; }; then
      printf '%s\n' "$line"
      return 0
    fi
    sleep 0.5
  done
  fail "$cache: $node never reached $phase${re:+ ($re)}; entries: $(entries "$cache" | tr '\n' ';')"
}

# model_cache NAME REFERENCE [EXTRA_SPEC_YAML]: apply a ModelCache.
model_cache() {
  k apply -f - >/dev/null <<EOF
apiVersion: model.csi.example.org/v1alpha1
kind: ModelCache
metadata:
  name: $1
spec:
  reference: $2
${3:-}
EOF
}

# blob_gets DIGEST...: blob GETs the throttle proxy logged for these digests so far.
blob_gets() {
  local pattern
  pattern=$(printf '%s|' "$@")
  grep -cE "^blob GET (${pattern%|}) " "$REGISTRY_DIR/slow.log" || true
}

# manifest_blobs REFERENCE: every blob digest the manifest names (config and layers).
manifest_blobs() {
  oras manifest fetch --plain-http "$1" | grep -oE 'sha256:[0-9a-f]{64}' | sort -u
}

k get crd modelcaches.model.csi.example.org >/dev/null || fail "the chart did not install the ModelCache CRD"
k delete namespace "$TEST_NS" --ignore-not-found --wait --timeout "$TIMEOUT" >/dev/null
k create namespace "$TEST_NS" >/dev/null
k delete modelcaches --all >/dev/null

# ---- 1. the schema refuses typos ----------------------------------------------------------
if out=$(printf 'apiVersion: model.csi.example.org/v1alpha1\nkind: ModelCache\nmetadata:\n  name: typo\nspec:\n  refrence: %s/models/x:v1\n' "$REGISTRY" | k apply -f - 2>&1); then
  fail "a ModelCache with spec.refrence was accepted: $out"
fi
printf '%s' "$out" | grep -q 'refrence' || fail "the refusal does not name the misspelt field: $out"
log "typo refused at apply time: $(printf '%s' "$out" | head -n 1)"

# ---- 2. warm, then mount with no blob fetched -----------------------------------------------
make_model "$WORK/warm"
WARM_REF="$REGISTRY_SLOW/models/e2e-warm:v1-$RUN"
WARM_DIGEST=$(push_model "$WORK/warm" "$REGISTRY/models/e2e-warm:v1-$RUN" oras)
mapfile -t WARM_BLOBS < <(manifest_blobs "$REGISTRY/models/e2e-warm:v1-$RUN")
model_cache warm "$WARM_REF" "  nodeSelector:
    kubernetes.io/hostname: $CLUSTER_NODE_NAME"
wait_entry warm "$CLUSTER_NODE_NAME" Ready >/dev/null
k wait --for=jsonpath='{.status.ready}'=1/1 modelcache/warm --timeout "$TIMEOUT" >/dev/null
k wait --for=jsonpath='{.status.digest}'="$WARM_DIGEST" modelcache/warm --timeout "$TIMEOUT" >/dev/null
warmed_gets=$(blob_gets "${WARM_BLOBS[@]}")
[ "$warmed_gets" -gt 0 ] || fail "warm: Ready, but the registry logged no blob GET for it"
log "warm: Ready on $CLUSTER_NODE_NAME with $WARM_DIGEST after $warmed_gets blob GETs; kubectl get modelcaches:"
k get modelcaches
sed -e "s|__BUSYBOX__|$TEST_IMAGE|g" -e "s|__REFERENCE__|$WARM_REF|g" -e 's|imagePullPolicy: IfNotPresent|imagePullPolicy: Never|' \
  -e 's|name: inline-reader|name: warm-reader|' "$ROOT/test/e2e/manifests/inline-pod.yaml" | k -n "$TEST_NS" apply -f - >/dev/null
k -n "$TEST_NS" wait --for=condition=Ready pod/warm-reader --timeout "$TIMEOUT" >/dev/null
check_digests warm-reader "$WORK/warm"
mounted_gets=$(blob_gets "${WARM_BLOBS[@]}")
[ "$mounted_gets" = "$warmed_gets" ] || fail "warm-reader: the registry served $((mounted_gets - warmed_gets)) blob GETs for a warmed model"
log "warm-reader: mounted the warmed model; registry blob GETs for it: $warmed_gets before the pod, $mounted_gets after (0 for the pod)"
k -n "$TEST_NS" describe pod warm-reader | grep -E 'model.csi.example.org|Pulled' | grep -F "$WARM_DIGEST" >/dev/null ||
  fail "warm-reader: no event names $WARM_DIGEST"

# ---- 3. a pod's own pull: Pulling, then Pulled with the digest, in that order ------------
make_model "$WORK/fresh"
FRESH_DIGEST=$(push_model "$WORK/fresh" "$REGISTRY/models/e2e-fresh:v1-$RUN" oras)
sed -e "s|__BUSYBOX__|$TEST_IMAGE|g" -e "s|__REFERENCE__|$REGISTRY/models/e2e-fresh:v1-$RUN|g" -e 's|imagePullPolicy: IfNotPresent|imagePullPolicy: Never|' \
  -e 's|name: inline-reader|name: fresh-reader|' "$ROOT/test/e2e/manifests/inline-pod.yaml" | k -n "$TEST_NS" apply -f - >/dev/null
k -n "$TEST_NS" wait --for=condition=Ready pod/fresh-reader --timeout "$TIMEOUT" >/dev/null
k -n "$TEST_NS" describe pod fresh-reader >"$WORK/fresh.describe"
order=$(awk '/model.csi.example.org/ && ($2 == "Pulling" || $2 == "Pulled") { print $2 }' "$WORK/fresh.describe" | tr '\n' ' ')
[ "$order" = "Pulling Pulled " ] || fail "fresh-reader: driver events in order '$order', not 'Pulling Pulled': $(grep model.csi "$WORK/fresh.describe")"
grep 'model.csi.example.org' "$WORK/fresh.describe" | grep -w Pulled | grep -qF "$FRESH_DIGEST" || fail "fresh-reader: Pulled does not name $FRESH_DIGEST"
log "fresh-reader: kubectl describe pod (driver events):"
grep -E '^ +Type|model.csi.example.org' "$WORK/fresh.describe"

# ---- 4. failures with the reason; a pull secret that works ------------------------------
model_cache missing-tag "$REGISTRY/models/e2e-warm:no-such-tag-$RUN"
line=$(wait_entry missing-tag "$CLUSTER_NODE_NAME" Failed 'NOT_FOUND \(MANIFEST_NOT_FOUND\)')
log "missing tag: Failed: $(printf '%s' "$line" | cut -f4)"
oras_auth() { oras "$1" -u "$REGISTRY_AUTH_USER" -p "$REGISTRY_AUTH_PASSWORD" "${@:2}"; }
push_model "$WORK/warm" "$REGISTRY_AUTH/models/e2e-private:v1-$RUN" oras_auth >/dev/null
model_cache refused "$REGISTRY_AUTH/models/e2e-private:v1-$RUN"
line=$(wait_entry refused "$CLUSTER_NODE_NAME" Failed 'PERMISSION_DENIED \(REGISTRY_UNAUTHORIZED\)')
log "refusing registry: Failed: $(printf '%s' "$line" | cut -f4)"
k -n "$TEST_NS" create secret docker-registry cache-creds --docker-server="$REGISTRY_AUTH" \
  --docker-username="$REGISTRY_AUTH_USER" --docker-password="$REGISTRY_AUTH_PASSWORD" >/dev/null
model_cache refused "$REGISTRY_AUTH/models/e2e-private:v1-$RUN" "  pullSecretRef: {name: cache-creds, namespace: $TEST_NS}"
wait_entry refused "$CLUSTER_NODE_NAME" Ready >/dev/null
object=$(k get modelcache refused -o yaml)
case "$object" in *"$REGISTRY_AUTH_PASSWORD"*) fail "the password is in the ModelCache" ;; esac
log "with pullSecretRef cache-creds: Ready; no credential in the object"

# ---- 5. a second node plugin: its own entry, nobody clobbered -----------------------------
mkdir -p "$SECOND_ROOT"
cat >"$WORK/second.yaml" <<EOF
cacheBudget: 2560Ki
logLevel: debug
registries:
  "$REGISTRY": {insecure: true}
  "$REGISTRY_SLOW": {insecure: true}
  "$REGISTRY_AUTH": {insecure: true}
EOF
(cd "$ROOT" && exec node --import tsx src/main.ts node --node-id "$SECOND_NODE" --root "$SECOND_ROOT" \
  --endpoint "unix://$WORK/second.sock" --config "$WORK/second.yaml" --kubeconfig "$KUBECONFIG") >"$WORK/second.log" 2>&1 &
second_pid=$!
model_cache shared "$REGISTRY/models/e2e-fresh:v1-$RUN"
wait_entry shared "$CLUSTER_NODE_NAME" Ready >/dev/null
wait_entry shared "$SECOND_NODE" Ready >/dev/null
for node in "$CLUSTER_NODE_NAME" "$SECOND_NODE"; do
  [ "$(entries shared | awk -F'\t' -v n="$node" '$1 == n { print $3 }')" = "$FRESH_DIGEST" ] || fail "shared: $node's entry lost its digest"
done
managers=$(k get modelcache shared --show-managed-fields -o jsonpath='{range .metadata.managedFields[*]}{.manager}{" "}{end}')
case "$managers" in *"model-csi-node/$CLUSTER_NODE_NAME"*"model-csi-node/$SECOND_NODE"* | *"model-csi-node/$SECOND_NODE"*"model-csi-node/$CLUSTER_NODE_NAME"*) ;;
  *) fail "shared: field managers are '$managers'" ;; esac
log "shared: two entries, each written by its own field manager ($managers):"
entries shared

# ---- 6. pins under eviction pressure (second plugin: budget 2.5 MiB) ---------------------
# Only the second plugin's budget is small; the caches select every plugin (no nodeSelector:
# the second one has no Node object), so the cluster node warms them too, with room to spare.
k delete modelcache shared warm missing-tag refused >/dev/null
for m in pinned u1 u2 u3; do
  make_model "$WORK/$m"
  push_model "$WORK/$m" "$REGISTRY/models/e2e-$m:v1-$RUN" oras >/dev/null
done
second_models() { find "$SECOND_ROOT/models/sha256" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
pinned_digest=$(oras manifest fetch --plain-http --descriptor "$REGISTRY/models/e2e-pinned:v1-$RUN" | grep -oE 'sha256:[0-9a-f]{64}' | head -n 1)
pinned_dir="$SECOND_ROOT/models/sha256/${pinned_digest#sha256:}"
model_cache pinned "$REGISTRY/models/e2e-pinned:v1-$RUN" "  pin: true
  refreshInterval: 1h"
wait_entry pinned "$SECOND_NODE" Ready 'pinned' >/dev/null
for m in u1 u2 u3; do
  model_cache "$m" "$REGISTRY/models/e2e-$m:v1-$RUN" "  refreshInterval: 1h"
  wait_entry "$m" "$SECOND_NODE" Ready >/dev/null
done
[ -d "$pinned_dir" ] || fail "the pinned model was evicted from the second plugin's cache"
line=$(wait_entry u1 "$SECOND_NODE" Failed 'evicted from this node')
log "u1 on $SECOND_NODE after its eviction: $(printf '%s' "$line" | cut -f2,4)"
evictions=$(grep -c 'evicting least recently used model' "$WORK/second.log" || true)
[ "$evictions" -ge 2 ] || fail "expected the budget to evict unpinned models (u1, u2), saw $evictions evictions"
log "pressure: $evictions unpinned models evicted on $SECOND_NODE, the pinned one stayed ($(second_models) models in its cache)"
mkdir -p "$WORK/big-pin"
head -c $((2 << 20)) /dev/urandom >"$WORK/big-pin/model.safetensors"
(cd "$WORK/big-pin" && oras push --plain-http "$REGISTRY/models/e2e-big-pin:v1-$RUN" model.safetensors:application/vnd.cncf.model.weight.v1.raw >/dev/null)
model_cache big-pin "$REGISTRY/models/e2e-big-pin:v1-$RUN" "  pin: true
  refreshInterval: 1h"
line=$(wait_entry big-pin "$SECOND_NODE" Failed 'RESOURCE_EXHAUSTED \(NO_SPACE\)')
[ -d "$pinned_dir" ] || fail "a pin that could not fit evicted the pinned model"
log "big-pin: Failed: $(printf '%s' "$line" | cut -f4)"
k delete modelcache pinned big-pin >/dev/null
# u1 and u2 were evicted: two more caches of them need 2.1 MiB beside the 1 MiB the deleted pin
# left; the oldest unused model, that one, must go.
model_cache u5 "$REGISTRY/models/e2e-u1:v1-$RUN" "  refreshInterval: 1h"
wait_entry u5 "$SECOND_NODE" Ready >/dev/null
model_cache u6 "$REGISTRY/models/e2e-u2:v1-$RUN" "  refreshInterval: 1h"
wait_entry u6 "$SECOND_NODE" Ready >/dev/null
for _ in $(seq 40); do [ -d "$pinned_dir" ] || break; sleep 0.5; done
[ ! -d "$pinned_dir" ] || fail "the model of the deleted (unpinned) cache was never evicted"
log "pinned deleted: its model was evicted under the next pressure"
k get modelcaches
stop_second
log "PASS"
