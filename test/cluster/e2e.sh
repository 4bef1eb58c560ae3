#!/usr/bin/env bash
# The e2e scenarios on the local single-node cluster that test/cluster/up.sh made (as root):
#
#   test/cluster/e2e.sh
#
# Each is checked from inside the pods with kubectl, and from the host (this machine is the
# node, so the host's mount table is the one the container runtime hands to containers):
#   1. the driver is registered with kubelet by itself (kubectl get csinode);
#   2. inline volumes: every file's sha256 inside the pod equals what was pushed, and writes
#      fail, also for a consumer that sets readOnly nowhere; the host's copy is ro,nosuid,nodev;
#   3. a PVC from a StorageClass is pinned to the manifest digest and read by two pods; after
#      the tag moves to another model, a new pod of the claim still sees the pinned bytes;
#   4. a slow pull (registry behind a throttle): the pod stays ContainerCreating while
#      `kubectl describe pod` shows the driver's progress message, then runs;
#   5. a wrong pull secret: the pod's events name the problem; no credential in any event or log;
#   6. the node plugin pod is deleted while pods use volumes: they keep serving, and unmount
#      cleanly later;
#   7. events on the pods: Pulling and Pulled (with the manifest digest) once per pull per pod
#      however often kubelet retried, Pulled for a cache hit, PullFailed with the error code;
#   8. deleting pods unpublishes; `helm uninstall` leaves no mount and no driver process; the
#      cache stays.
# It uninstalls the chart at the end (scenario 8): run up.sh again to install it again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=test/cluster/lib/e2e-env.sh
source "$ROOT/test/cluster/lib/e2e-env.sh"
TEST_NS=model-csi-e2e
STORAGE_CLASS=e2e-model
REGISTRY_AUTH_PASSWORD=$(cat "$REGISTRY_DIR/auth-password")
WRONG_PASSWORD="wrong-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/model-csi-cluster-e2e.XXXXXX")"
started=$SECONDS

log() { printf 'e2e: [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  printf 'e2e: FAIL: %s\n' "$*" >&2
  exit 1
}
k() { kubectl "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    log "diagnostics (exit $rc)"
    k get nodes,csinodes,csidrivers,sc,pv -o wide
    k get pods -A -o wide
    k -n "$TEST_NS" describe pods,pvc | tail -n 120
    k -n "$RELEASE_NS" logs -l "app.kubernetes.io/instance=$RELEASE" --all-containers --prefix --tail=100
  fi
  [ -n "${poller:-}" ] && kill "$poller" 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# render MANIFEST REFERENCE: a shared manifest with its placeholders filled in.
render() {
  sed -e "s|__BUSYBOX__|$TEST_IMAGE|g" -e "s|__REFERENCE__|$2|g" -e "s|__STORAGE_CLASS__|$STORAGE_CLASS|g" \
    -e 's|imagePullPolicy: IfNotPresent|imagePullPolicy: Never|' "$ROOT/test/e2e/manifests/$1"
}

# inline_pod NAME REFERENCE [SECRET]: a reader pod with an inline volume of REFERENCE.
inline_pod() {
  render inline-pod.yaml "$2" | sed -e "s|name: inline-reader|name: $1|"
  if [ -n "${3:-}" ]; then printf '        nodePublishSecretRef:\n          name: %s\n' "$3"; fi
}

# host_csi_mounts: the host's mounts in pods' CSI volume dirs, "mountpoint options" per line.
host_csi_mounts() {
  awk -v pods="$CLUSTER_KUBELET_DIR/pods/" 'index($5, pods) == 1 && index($5, "/volumes/kubernetes.io~csi/") > 0 { print $5, $6 }' /proc/self/mountinfo
}

# pod_target POD: the host path of POD's volume "model".
pod_target() {
  echo "$CLUSTER_KUBELET_DIR/pods/$(k -n "$TEST_NS" get pod "$1" -o jsonpath='{.metadata.uid}')/volumes/kubernetes.io~csi/$2/mount"
}

# check_host_view POD: the host's copy of POD's model mount is ro,nosuid,nodev and refuses a write.
check_host_view() {
  local pv target line
  pv=$(k -n "$TEST_NS" get pod "$1" -o jsonpath='{.spec.volumes[?(@.name=="model")].persistentVolumeClaim.claimName}')
  if [ -n "$pv" ]; then pv=$(k -n "$TEST_NS" get pvc "$pv" -o jsonpath='{.spec.volumeName}'); else pv=model; fi
  target=$(pod_target "$1" "$pv")
  line=$(host_csi_mounts | awk -v t="$target" '$1 == t { print $2 }' | tail -n 1)
  [ -n "$line" ] || fail "$1: $target is not mounted on the host"
  case ",$line," in *,ro,*) ;; *) fail "$1: the host sees $target as $line (not ro)" ;; esac
  case ",$line," in *,nosuid,*nodev,* | *,nodev,*nosuid,*) ;; *) fail "$1: the host sees $target as $line (not nosuid,nodev)" ;; esac
  if touch "$target/written-on-the-host" 2>/dev/null; then fail "$1: a write through the host's view of $target succeeded"; fi
  log "$1: the host sees $target as $line; writes through it fail"
}

wait_ready() { k -n "$TEST_NS" wait --for=condition=Ready "${@/#/pod/}" --timeout "$TIMEOUT" >/dev/null; }

# ---- 1. registration --------------------------------------------------------------------
k get csinode "$CLUSTER_NODE_NAME" -o jsonpath='{.spec.drivers[*].name}' | grep -qw model.csi.example.org ||
  fail "kubelet has no model.csi.example.org on $CLUSTER_NODE_NAME"
log "kubectl get csinode:"
k get csinode -o custom-columns='NAME:.metadata.name,DRIVERS:.spec.drivers[*].name,NODE_ID:.spec.drivers[*].nodeID'
k -n "$RELEASE_NS" get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[0].spec.containers[*].name}' | grep -qx driver ||
  fail "the node plugin pod runs more than the driver container (a sidecar?)"
k delete namespace "$TEST_NS" --ignore-not-found --wait --timeout "$TIMEOUT" >/dev/null
k create namespace "$TEST_NS" >/dev/null

# ---- models -----------------------------------------------------------------------------
oras_auth() { oras "$1" -u "$REGISTRY_AUTH_USER" -p "$REGISTRY_AUTH_PASSWORD" "${@:2}"; }
make_model "$WORK/model"
make_model "$WORK/model2"
DIGEST=$(push_model "$WORK/model" "$REGISTRY/models/e2e-tiny:v1" oras)
REFERENCE="$REGISTRY/models/e2e-tiny:v1"
push_model "$WORK/model" "$REGISTRY_AUTH/models/e2e-private:v1" oras_auth >/dev/null
# The slow model: one 64 MiB weight, fetched at REGISTRY_SLOW_RATE through the throttle.
mkdir -p "$WORK/big"
head -c $((64 << 20)) /dev/urandom >"$WORK/big/model.safetensors"
BIG_DIGEST=$(cd "$WORK/big" && oras push --plain-http --artifact-type application/vnd.cncf.model.manifest.v1+json \
  "$REGISTRY/models/e2e-big:v1" model.safetensors:application/vnd.cncf.model.weight.v1.raw |
  sed -n 's/^Digest: *\(sha256:[0-9a-f]\{64\}\).*/\1/p')
# Not a model: a Helm chart (its layer has no file name and no model media type), pushed blob
# by blob so oras adds no title annotation (with one it would be an ORAS file artifact). The
# pull starts, then fails.
printf 'not a model' >"$WORK/chart.tgz"
printf '{}' >"$WORK/chart-config.json"
oras blob push --plain-http "$REGISTRY/models/e2e-unknown" "$WORK/chart.tgz" >/dev/null
oras blob push --plain-http "$REGISTRY/models/e2e-unknown" "$WORK/chart-config.json" >/dev/null
cat >"$WORK/chart-manifest.json" <<EOF
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:$(sha256sum <"$WORK/chart-config.json" | cut -d' ' -f1)", "size": 2},
 "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": "sha256:$(sha256sum <"$WORK/chart.tgz" | cut -d' ' -f1)", "size": 11}]}
EOF
oras manifest push --plain-http "$REGISTRY/models/e2e-unknown:v1" "$WORK/chart-manifest.json" >/dev/null
log "pushed $REFERENCE ($DIGEST), $REGISTRY/models/e2e-big:v1 ($BIG_DIGEST), a private copy on $REGISTRY_AUTH, and a Helm chart"

# ---- 4 (started first, checked later). slow pull ----------------------------------------
# The StorageClass-less inline reader, pointed at the throttled registry; its pull outlives the
# driver's publish wait (publishWaitSeconds, 60 s by default), so kubelet's NodePublishVolume
# gets the progress message, which `kubectl describe pod` shows.
cat >"$WORK/slow.yaml" <<EOF
$(inline_pod slow-reader "$REGISTRY_SLOW/models/e2e-big:v1")
EOF
k -n "$TEST_NS" apply -f "$WORK/slow.yaml" >/dev/null
(
  while :; do
    line=$(k -n "$TEST_NS" describe pod slow-reader 2>/dev/null | grep -m1 -o 'pulling .* percent).*' || true)
    if [ -n "$line" ]; then
      printf '%s\n' "$line" >"$WORK/progress-line"
      break
    fi
    sleep 2
  done
) &
poller=$!

# ---- 2. inline volumes ------------------------------------------------------------------
inline_pod inline-reader "$REFERENCE" | k -n "$TEST_NS" apply -f - >/dev/null
render inline-unmarked-pod.yaml "$REFERENCE" | k -n "$TEST_NS" apply -f - >/dev/null
wait_ready inline-reader inline-unmarked
for pod in inline-reader inline-unmarked; do
  check_digests "$pod"
  check_read_only "$pod"
  check_host_view "$pod"
done

# ---- 3. PVC pinned to the digest --------------------------------------------------------
k apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
provisioner: model.csi.example.org
reclaimPolicy: Delete
volumeBindingMode: Immediate
parameters:
  model.csi.example.org/reference: $REFERENCE
EOF
render pvc-pods.yaml "$REFERENCE" | k -n "$TEST_NS" apply -f - >/dev/null
k -n "$TEST_NS" wait --for=jsonpath='{.status.phase}'=Bound pvc/model --timeout "$TIMEOUT" >/dev/null
wait_ready pvc-reader-a pvc-reader-b
PV=$(k -n "$TEST_NS" get pvc model -o jsonpath='{.spec.volumeName}')
k get pv "$PV" -o jsonpath='{.spec.csi}' | grep -q "${DIGEST#sha256:}" ||
  fail "PV $PV does not name the manifest digest $DIGEST: $(k get pv "$PV" -o jsonpath='{.spec.csi}')"
log "PV $PV is pinned to $DIGEST"
for pod in pvc-reader-a pvc-reader-b; do check_digests "$pod"; done
check_host_view pvc-reader-a
MOVED=$(push_model "$WORK/model2" "$REFERENCE" oras)
[ "$MOVED" != "$DIGEST" ] || fail "the second model has the same digest as the first"
render pvc-pods.yaml "$REFERENCE" | awk '/^---$/ { n++ } n == 1' | sed -e 's/pvc-reader-a/pvc-reader-c/' |
  k -n "$TEST_NS" apply -f - >/dev/null
wait_ready pvc-reader-c
check_digests pvc-reader-c "$WORK/model"
log "the tag moved to $MOVED; a new pod of the claim still sees $DIGEST"

# ---- 5. wrong pull secret ---------------------------------------------------------------
k -n "$TEST_NS" create secret docker-registry wrong-creds --docker-server="$REGISTRY_AUTH" \
  --docker-username="$REGISTRY_AUTH_USER" --docker-password="$WRONG_PASSWORD" >/dev/null
k -n "$TEST_NS" create secret docker-registry good-creds --docker-server="$REGISTRY_AUTH" \
  --docker-username="$REGISTRY_AUTH_USER" --docker-password="$REGISTRY_AUTH_PASSWORD" >/dev/null
inline_pod wrong-secret "$REGISTRY_AUTH/models/e2e-private:v1" wrong-creds | k -n "$TEST_NS" apply -f - >/dev/null
inline_pod good-secret "$REGISTRY_AUTH/models/e2e-private:v1" good-creds | k -n "$TEST_NS" apply -f - >/dev/null
event=""
for _ in $(seq 60); do
  event=$(k -n "$TEST_NS" get events --field-selector involvedObject.name=wrong-secret,reason=FailedMount \
    -o jsonpath='{.items[*].message}' 2>/dev/null)
  [ -n "$event" ] && break
  sleep 2
done
[ -n "$event" ] || fail "no FailedMount event on wrong-secret"
log "wrong-secret event: $event"
printf "%s" "$event" | grep -q "models/e2e-private" || fail "the event does not name the repository"
printf '%s' "$event" | grep -qiE 'credential|unauthori|denied' || fail "the event does not say the credentials were refused"
printf '%s' "$event" | grep -qiE 'secret' || fail "the event does not point at the pull secret"
wait_ready good-secret
check_digests good-secret
k get events -A -o yaml >"$WORK/events.yaml"
k -n "$RELEASE_NS" logs -l "app.kubernetes.io/instance=$RELEASE" --all-containers --prefix --tail=-1 >"$WORK/driver.log"
for secret in "$WRONG_PASSWORD" "$REGISTRY_AUTH_PASSWORD" \
  "$(printf '%s:%s' "$REGISTRY_AUTH_USER" "$WRONG_PASSWORD" | base64 -w0)" \
  "$(printf '%s:%s' "$REGISTRY_AUTH_USER" "$REGISTRY_AUTH_PASSWORD" | base64 -w0)"; do
  if grep -qF -- "$secret" "$WORK/events.yaml" "$WORK/driver.log"; then fail "a credential appears in an event or the driver log"; fi
done
log "no credential in $(grep -c . "$WORK/events.yaml") lines of events and $(grep -c . "$WORK/driver.log") lines of driver log"

# ---- 4 (checked). slow pull -------------------------------------------------------------
phase=$(k -n "$TEST_NS" get pod slow-reader -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}')
k -n "$TEST_NS" wait --for=condition=Ready pod/slow-reader --timeout 300s >/dev/null
# A poller still looking once the pod is Ready never saw the progress: stop it (checked below).
kill "$poller" 2>/dev/null || true
wait "$poller" 2>/dev/null || true
poller=""
[ -s "$WORK/progress-line" ] || fail "kubectl describe pod slow-reader never showed the driver's progress"
grep -q 'MISSING' "$WORK/progress-line" && fail "kubelet mangled the progress message: $(cat "$WORK/progress-line")"
log "slow-reader was ${phase:-waiting}; describe pod showed: $(cat "$WORK/progress-line")"
k -n "$TEST_NS" exec slow-reader -- sha256sum /models/model.safetensors | grep -q "$(sha256sum "$WORK/big/model.safetensors" | cut -d' ' -f1)" ||
  fail "slow-reader: the big file's sha256 differs"
log "slow-reader: running, the 64 MiB weight matches its sha256"

# ---- 7. events on the pods --------------------------------------------------------------
# events POD REASON [SOURCE]: the messages of POD's events with REASON from SOURCE (the driver
# by default: kubelet's image pulls use the reasons Pulling and Pulled too), one per line.
events() {
  k -n "$TEST_NS" get events --field-selector "involvedObject.name=$1,reason=$2,source=${3:-model.csi.example.org}" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}'
}
inline_pod unknown-artifact "$REGISTRY/models/e2e-unknown:v1" | k -n "$TEST_NS" apply -f - >/dev/null
for pod in inline-reader inline-unmarked slow-reader; do
  want=$DIGEST
  [ "$pod" = slow-reader ] && want=$BIG_DIGEST
  pulled=$(events "$pod" Pulled)
  [ "$(printf '%s\n' "$pulled" | grep -c .)" -eq 1 ] || fail "$pod: expected one Pulled event, got: $pulled"
  printf '%s' "$pulled" | grep -qF "$want" || fail "$pod: Pulled does not name $want: $pulled"
  log "$pod: Pulled: $pulled"
done
pulling=$(events slow-reader Pulling)
retries=$(events slow-reader FailedMount kubelet | grep -c . || true)
[ "$(printf '%s\n' "$pulling" | grep -c .)" -eq 1 ] || fail "slow-reader: expected one Pulling event, got: $pulling"
[ "$retries" -ge 1 ] || fail "slow-reader: kubelet never retried (no FailedMount), so once-per-pull is not shown"
log "slow-reader: one Pulling ($pulling) and one Pulled over $retries kubelet retries"
failed=""
for _ in $(seq 60); do
  failed=$(events unknown-artifact PullFailed)
  [ -n "$failed" ] && break
  sleep 1
done
case "$failed" in *UNSUPPORTED_MEDIA_TYPE*application/vnd.cncf.helm.chart.content.v1.tar+gzip*) ;; *) fail "unknown-artifact: no PullFailed naming the media type: $failed" ;; esac
log "unknown-artifact: PullFailed: $(printf '%s\n' "$failed" | head -n 1)"
# grep without -q reads to the end: with -q, kubectl could die of SIGPIPE and pipefail hide a match.
k get events -A -o yaml | grep -F -e "$WRONG_PASSWORD" -e "$REGISTRY_AUTH_PASSWORD" >/dev/null && fail "a credential appears in an event"

# ---- 6. node plugin restart -------------------------------------------------------------
old=$(k -n "$RELEASE_NS" get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[0].metadata.name}')
k -n "$RELEASE_NS" delete pod "$old" --wait --timeout "$TIMEOUT" >/dev/null
new=""
for _ in $(seq 90); do
  new=$(k -n "$RELEASE_NS" get pods -l app.kubernetes.io/component=node \
    -o jsonpath='{range .items[?(@.status.containerStatuses[0].ready==true)]}{.metadata.name}{"\n"}{end}' | grep -vx "$old" || true)
  [ -n "$new" ] && break
  sleep 1
done
[ -n "$new" ] || fail "the DaemonSet did not bring a ready node plugin pod back after $old was deleted"
for pod in inline-reader pvc-reader-a good-secret; do check_digests "$pod"; done
check_host_view inline-unmarked
k -n "$RELEASE_NS" logs "$new" | grep 'recovered published volumes' >/dev/null || fail "the new node plugin did not recover the volumes"
log "node plugin $old replaced by $new; volumes kept serving"

# ---- 8. clean-up ------------------------------------------------------------------------
before=$(host_csi_mounts | wc -l)
[ "$before" -ge 7 ] || fail "expected at least 7 CSI mounts on the host while the pods run, counted $before"
k -n "$TEST_NS" delete pod --all --wait --timeout "$TIMEOUT" >/dev/null
left=$(host_csi_mounts | wc -l)
[ "$left" -eq 0 ] || fail "$left CSI mounts left after the pods were deleted: $(host_csi_mounts)"
delete_claim model "$PV"
log "$before CSI mounts while the pods ran, none after they were deleted; PV $PV deleted"
release_uninstall
if grep " $CLUSTER_KUBELET_DIR/pods/" /proc/self/mountinfo; then fail "mounts are left under the pods dir after helm uninstall"; fi
pgrep -f 'dist/main.js (node|controller)' >/dev/null && fail "a driver process is left after helm uninstall"
k get csidriver model.csi.example.org >/dev/null 2>&1 && fail "the CSIDriver is left after helm uninstall"
for digest in "$DIGEST" "$BIG_DIGEST"; do
  [ -d "$RELEASE_CACHE_ROOT/models/sha256/${digest#sha256:}" ] || fail "the cache lost model $digest at uninstall"
done
models=$(find "$RELEASE_CACHE_ROOT/models/sha256" -mindepth 1 -maxdepth 1 -type d | wc -l)
log "helm uninstall: no mount, no driver process, no CSIDriver; the cache keeps $models models"
k delete namespace "$TEST_NS" --wait=false >/dev/null
k delete storageclass "$STORAGE_CLASS" >/dev/null
log "PASS"
