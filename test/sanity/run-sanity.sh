#!/usr/bin/env bash
# Runs the upstream CSI conformance suite (csi-sanity, github.com/kubernetes-csi/csi-test/v5)
# against a real node process and a real controller process on unix sockets. Needs root
# (the node makes real bind mounts) and csi-sanity in $CSI_SANITY, ~/go/bin or $PATH.
#
# A real docker-registry on loopback holds a small ModelPack model; the StorageClass parameters
# name it by tag, so CreateVolume resolves and pins the digest and NodePublishVolume pulls it
# into the node cache and mounts it, the way a PVC would. The node process also serves the
# Controller service (--serve-controller) so that csi-sanity runs its full node lifecycle
# ("Node Service should work" / "should be idempotent"), which it only does when the node
# socket claims CONTROLLER_SERVICE; --csi.controllerendpoint points at the separate controller
# process, so the controller's own tests run against `model-csi controller`.
#
# Exit status is csi-sanity's. The last line is "csi-sanity: passed=N failed=N skipped=N".
set -euo pipefail
cd "$(dirname "$0")/../.."

# Every skipped test and why. Only tests of capabilities the driver does not claim are skipped:
# - Snapshots: CREATE_DELETE_SNAPSHOT / LIST_SNAPSHOTS / GET_SNAPSHOT not claimed (a model is
#   immutable; a snapshot of it is the same digest). Covers the ListSnapshots, GetSnapshot,
#   DeleteSnapshot, CreateSnapshot groups and "create volume from an existing source snapshot".
# - Cloning: CLONE_VOLUME not claimed ("create volume from an existing source volume").
# - Expansion: EXPAND_VOLUME (controller and node) not claimed; a model has the size it has.
# - ModifyVolume / volume attribute classes: MODIFY_VOLUME not claimed.
# - ListVolumes, GetCapacity: LIST_VOLUMES / GET_CAPACITY not claimed (the controller is stateless).
# - ControllerPublishVolume / ControllerUnpublishVolume: PUBLISH_UNPUBLISH_VOLUME not claimed
#   (nothing to attach).
# - NodeStageVolume / NodeUnstageVolume: STAGE_UNSTAGE_VOLUME not claimed (the cache is node-wide).
# - Volume health (ControllerGetVolumeHealth, ControllerListVolumeHealth, NodeGetVolumeHealth,
#   NodeGetStorageHealth): alpha GET_VOLUME_HEALTH / LIST_VOLUME_HEALTH / GET_STORAGE_HEALTH
#   not claimed (the driver reports VOLUME_CONDITION through NodeGetVolumeStats).
# - Single node multi writer: SINGLE_NODE_MULTI_WRITER not claimed (model volumes are read-only).
# - Group snapshots: the GroupController service is not served.
SKIP=(
  'ListSnapshots'
  'GetSnapshot'
  'DeleteSnapshot'
  'CreateSnapshot'
  'from an existing source snapshot'
  'volume source snapshot is not found'
  'from an existing source volume'
  'volume source volume is not found'
  'ExpandVolume'
  'NodeExpandVolume'
  'ModifyVolume'
  'volume attribute class'
  'ListVolumes'
  'GetCapacity'
  'ControllerPublishVolume'
  'ControllerUnpublishVolume'
  'volume lifecycle'
  'NodeStageVolume'
  'NodeUnstageVolume'
  'VolumeHealth'
  'StorageHealth'
  'single node multi writer'
  'GroupController'
  'VolumeGroupSnapshot'
)

if [ "$(id -u)" -ne 0 ]; then
  echo "run-sanity.sh: must run as root (the node plugin makes real bind mounts)" >&2
  exit 1
fi
sanity="${CSI_SANITY:-}"
if [ -z "$sanity" ]; then
  if [ -x "$HOME/go/bin/csi-sanity" ]; then sanity="$HOME/go/bin/csi-sanity"; else sanity="$(command -v csi-sanity || true)"; fi
fi
if [ -z "$sanity" ] || [ ! -x "$sanity" ]; then
  echo "run-sanity.sh: csi-sanity not found; install it with scripts/install-test-deps.sh" >&2
  exit 1
fi
if [ "${MODEL_CSI_TEST_DIST:-}" = "1" ]; then main=(dist/main.js); else main=(--import tsx src/main.ts); fi

work="$(mktemp -d /tmp/model-csi-sanity.XXXXXX)"
pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Anything csi-sanity left mounted under the work dir (deepest first).
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r point; do umount "$point" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

command -v docker-registry >/dev/null || { echo "run-sanity.sh: docker-registry not found; install it with scripts/install-test-deps.sh" >&2; exit 1; }
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$work/model/weights"
printf '{"architectures":["Sanity"]}\n' > "$work/model/config.json"
head -c 65536 /dev/urandom > "$work/model/weights/model.safetensors"
node --import tsx scripts/demo/push-model.ts "$work/model" "127.0.0.1:$port/sanity/model:v1" > /dev/null
cat > "$work/params.yaml" <<YAML
model.csi.example.org/reference: 127.0.0.1:$port/sanity/model:v1
YAML

node "${main[@]}" node --serve-controller --endpoint "unix://$work/node.sock" --root "$work/root" --node-id sanity-node \
  > "$work/node.log" 2>&1 &
pids+=("$!")
node "${main[@]}" controller --endpoint "unix://$work/controller.sock" --root "$work/controller-root" --node-id sanity-controller \
  > "$work/controller.log" 2>&1 &
pids+=("$!")
for sock in node controller; do
  for _ in $(seq 1 200); do [ -S "$work/$sock.sock" ] && break; sleep 0.1; done
  if [ ! -S "$work/$sock.sock" ]; then
    echo "run-sanity.sh: the $sock plugin did not start:" >&2
    cat "$work/$sock.log" >&2
    exit 1
  fi
done

skip_regex="$(IFS='|'; echo "${SKIP[*]}")"
status=0
"$sanity" \
  --csi.endpoint "unix://$work/node.sock" \
  --csi.controllerendpoint "unix://$work/controller.sock" \
  --csi.testvolumeparameters "$work/params.yaml" \
  --csi.mountdir "$work/mnt" \
  --csi.stagingdir "$work/staging" \
  --ginkgo.skip "$skip_regex" \
  --ginkgo.no-color \
  --ginkgo.junit-report "$work/junit.xml" \
  > "$work/sanity.log" 2>&1 || status=$?
cat "$work/sanity.log"
echo "---- passed specs ----"
grep -o '<testcase name="[^"]*" classname="[^"]*" status="passed"' "$work/junit.xml" | sed -E 's/<testcase name="([^"]*)".*/  \1/' || true
if [ "$status" -ne 0 ]; then
  echo "---- node plugin log ----"; tail -n 50 "$work/node.log"
  echo "---- controller plugin log ----"; tail -n 50 "$work/controller.log"
fi
summary="$(grep -Eo '[0-9]+ Passed \| [0-9]+ Failed \| [0-9]+ Pending \| [0-9]+ Skipped' "$work/sanity.log" | tail -n 1 || true)"
passed="$(sed -E 's/^([0-9]+) Passed.*/\1/' <<<"$summary")"
failed="$(sed -E 's/.*\| ([0-9]+) Failed.*/\1/' <<<"$summary")"
skipped="$(sed -E 's/.*\| ([0-9]+) Skipped.*/\1/' <<<"$summary")"
echo "csi-sanity: passed=${passed:-?} failed=${failed:-?} skipped=${skipped:-?}"
exit "$status"
