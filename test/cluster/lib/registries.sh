# shellcheck shell=bash
# The cluster e2e's registries, host processes on the node IP (reachable from the host shell
# and from pods through the CNI bridge), all plain HTTP and named `insecure` in the chart
# values, the only way the driver accepts plain HTTP off loopback:
#   REGISTRY          $CLUSTER_NODE_IP:5000  Debian's docker-registry, open
#   REGISTRY_SLOW     $CLUSTER_NODE_IP:5001  the same registry behind a per-request throttle
#   REGISTRY_AUTH     $CLUSTER_NODE_IP:5002  a second docker-registry with htpasswd auth
# Sourced after node.sh (CLUSTER_DIR, CLUSTER_NODE_IP).

REGISTRY_DIR=$CLUSTER_DIR/registry
REGISTRY=$CLUSTER_NODE_IP:5000
REGISTRY_SLOW=$CLUSTER_NODE_IP:5001
REGISTRY_AUTH=$CLUSTER_NODE_IP:5002
# Credentials of the auth registry: made up per cluster, written for the e2e only.
REGISTRY_AUTH_USER=e2e-user
# Bytes per second of each throttled blob request. Ranged pulls fetch pieces over several
# connections, but the span at the hash frontier (half the 64 MiB slow model) still takes ~128 s
# at this rate: longer than publishWaitSeconds (60 s), so kubectl describe pod shows progress.
REGISTRY_SLOW_RATE=${REGISTRY_SLOW_RATE:-262144}

_rlog() { echo "registry: $*" >&2; }

# _registry_config NAME PORT [HTPASSWD]: a docker-registry config for one instance.
_registry_config() {
  local name=$1 port=$2 htpasswd=${3:-}
  mkdir -p "$REGISTRY_DIR/$name/data"
  {
    printf 'version: 0.1\nlog:\n  level: warn\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$REGISTRY_DIR/$name/data"
    printf 'http:\n  addr: %s:%s\n' "$CLUSTER_NODE_IP" "$port"
    if [ -n "$htpasswd" ]; then
      printf 'auth:\n  htpasswd:\n    realm: model-csi-e2e\n    path: %s\n' "$htpasswd"
    fi
  } >"$REGISTRY_DIR/$name/config.yml"
}

# _registry_start NAME COMMAND...: start COMMAND in the background unless NAME runs.
_registry_start() {
  local name=$1 pidfile="$REGISTRY_DIR/$1.pid"
  shift
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
  nohup "$@" >"$REGISTRY_DIR/$name.log" 2>&1 &
  echo $! >"$pidfile"
}

# _registry_wait HOST:PORT: until the registry answers /v2/ (200, or 401 with auth).
_registry_wait() {
  local i
  for i in $(seq 100); do
    case "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/v2/")" in 200 | 401) return 0 ;; esac
    [ "$i" = 100 ] || sleep 0.1
  done
  _rlog "no registry answers on $1; its log:"
  tail -n 20 "$REGISTRY_DIR"/*.log >&2
  return 1
}

registries_up() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
  mkdir -p "$REGISTRY_DIR"
  [ -s "$REGISTRY_DIR/auth-password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$REGISTRY_DIR/auth-password"
  REGISTRY_AUTH_PASSWORD=$(cat "$REGISTRY_DIR/auth-password")
  htpasswd -Bbn "$REGISTRY_AUTH_USER" "$REGISTRY_AUTH_PASSWORD" >"$REGISTRY_DIR/htpasswd" 2>/dev/null
  _registry_config open 5000
  _registry_config auth 5002 "$REGISTRY_DIR/htpasswd"
  _registry_start open docker-registry serve "$REGISTRY_DIR/open/config.yml"
  _registry_start auth docker-registry serve "$REGISTRY_DIR/auth/config.yml"
  _registry_start slow env -C "$root" node --import tsx test/cluster/throttle.ts \
    "$REGISTRY_SLOW" "http://$REGISTRY" "$REGISTRY_SLOW_RATE"
  _registry_wait "$REGISTRY"
  _registry_wait "$REGISTRY_AUTH"
  _registry_wait "$REGISTRY_SLOW"
  _rlog "open $REGISTRY, throttled $REGISTRY_SLOW ($REGISTRY_SLOW_RATE B/s per request), auth $REGISTRY_AUTH"
}

# Safe when nothing runs: stops what the pid files name, then anything still serving our configs.
registries_down() {
  local pidfile
  for pidfile in "$REGISTRY_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  pkill -f "docker-registry serve $REGISTRY_DIR/" 2>/dev/null || true
  pkill -f "test/cluster/throttle.ts $REGISTRY_SLOW" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    pgrep -f "docker-registry serve $REGISTRY_DIR/|test/cluster/throttle.ts $REGISTRY_SLOW" >/dev/null || return 0
    [ "$i" = 50 ] || sleep 0.1
  done
  pkill -9 -f "docker-registry serve $REGISTRY_DIR/|test/cluster/throttle.ts $REGISTRY_SLOW" 2>/dev/null || true
}
