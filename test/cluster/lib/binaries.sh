#!/usr/bin/env bash
# Builds the upstream binaries the test cluster runs, from the Go module proxy
# (no other download source is reachable here). Results are cached by version
# under /var/cache/model-csi, outside the checkout, so only the first run pays
# the ~6 minute compile. Sourced by test/cluster/up.sh; `bash binaries.sh`
# runs the build directly.

CLUSTER_K8S_VERSION="${CLUSTER_K8S_VERSION:-v1.32.10}"
CLUSTER_PROVISIONER_VERSION="${CLUSTER_PROVISIONER_VERSION:-v5.3.0}"
CLUSTER_CACHE_ROOT="${CLUSTER_CACHE_ROOT:-/var/cache/model-csi}"
CLUSTER_K8S_BIN="$CLUSTER_CACHE_ROOT/k8s-$CLUSTER_K8S_VERSION/bin"
CLUSTER_PROVISIONER_BIN="$CLUSTER_CACHE_ROOT/csi-provisioner-$CLUSTER_PROVISIONER_VERSION/bin"
CLUSTER_K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# The proxy answers 403 for these staging modules at v0.32.10; their v0.32.9
# source is identical, so the build pins them one patch back.
CLUSTER_K8S_STAGING_OVERRIDES="${CLUSTER_K8S_STAGING_OVERRIDES:-cluster-bootstrap=v0.32.9 endpointslice=v0.32.9 externaljwt=v0.32.9 kube-aggregator=v0.32.9 kube-controller-manager=v0.32.9 metrics=v0.32.9}"

_cluster_blog() { echo "cluster: $*" >&2; }

_cluster_go() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
  else _cluster_blog "no Go toolchain (looked in PATH and /usr/local/go/bin)"; return 1
  fi
}

# A cache entry counts only if its stamp exists and every binary is there:
# binaries are renamed into place one by one (each rename is atomic) and the
# stamp is written last, so an interrupted build never looks complete.
_cluster_cache_ok() { # bindir names...
  local dir=$1 name; shift
  [[ -f "$dir/../.complete" ]] || return 1
  for name in "$@"; do [[ -x "$dir/$name" ]] || return 1; done
}

# Moves finished binaries from tmpdir/bin into finaldir/bin, then stamps it.
_cluster_publish() { # tmpdir finaldir
  local f
  mkdir -p "$2/bin" || return 1
  for f in "$1"/bin/*; do mv -f "$f" "$2/bin/" || return 1; done
  echo "built $(date -u +%FT%TZ)" >"$2/.complete" && rm -rf "$1"
}

_cluster_build_k8s() {
  local go ver=$CLUSTER_K8S_VERSION final tmp gomod info hash date minor mod sver o kv c
  go=$(_cluster_go) || return 1
  final=$(dirname "$CLUSTER_K8S_BIN")
  tmp=$(mktemp -d "$CLUSTER_CACHE_ROOT/.k8s-$ver.XXXXXX") || return 1
  mkdir -p "$tmp/src" "$tmp/bin"
  _cluster_blog "building Kubernetes $ver (${CLUSTER_K8S_COMPONENTS[*]}); about 6-8 min cold on 2 cores"

  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which
  # do not apply to a dependent module; a wrapper module re-points each of
  # them (the k8s.io/* v0.0.0 requirements) at the published v0.X.Y tags.
  gomod=$(cd "$tmp/src" && "$go" mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  info=${gomod%.mod}.info
  [[ -f "$gomod" && -f "$info" ]] || { _cluster_blog "cannot fetch k8s.io/kubernetes@$ver"; rm -rf "$tmp"; return 1; }
  minor=${ver#v1.}; minor=${minor%%.*}
  {
    # godebug matches upstream's go.mod so behaviour equals release binaries.
    printf 'module model-csi.test/k8s-build\n\ngo 1.23.0\n\ngodebug default=go1.23\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$ver"
    while read -r mod; do
      sver="v0.${ver#v1.}"
      for o in $CLUSTER_K8S_STAGING_OVERRIDES; do
        [[ "k8s.io/${o%%=*}" == "$mod" ]] && sver=${o#*=}
      done
      printf '\t%s => %s %s\n' "$mod" "$mod" "$sver"
    done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod")
    printf ')\n'
  } >"$tmp/src/go.mod"

  hash=$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info")
  date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
  local ldflags="-s -w" pkg key val
  for kv in "gitVersion=$ver" "gitMajor=1" "gitMinor=$minor" "gitCommit=${hash:-unknown}" \
            "gitTreeState=clean" "buildDate=${date:-1970-01-01T00:00:00Z}"; do
    key=${kv%%=*}; val=${kv#*=}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.$key=$val"
    done
  done
  local pkgs=()
  for c in "${CLUSTER_K8S_COMPONENTS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done

  # `go get pkg@ver` resolves the requirement graph into the wrapper's
  # go.mod/go.sum; without @ver it would upgrade k8s.io/kubernetes to latest.
  if ! (cd "$tmp/src" && "$go" get "${pkgs[@]/%/@$ver}" >"$tmp/get.log" 2>&1); then
    _cluster_blog "go get failed:"; tail -n 30 "$tmp/get.log" >&2; rm -rf "$tmp"; return 1
  fi
  # Same tags as hack/lib/golang.sh; static so nothing depends on host libc.
  if ! (cd "$tmp/src" && CGO_ENABLED=0 "$go" build -tags selinux,notest -ldflags "$ldflags" \
          -o "$tmp/bin/" "${pkgs[@]}" >"$tmp/build.log" 2>&1); then
    _cluster_blog "go build failed:"; tail -n 30 "$tmp/build.log" >&2; rm -rf "$tmp"; return 1
  fi
  rm -rf "$tmp/src"
  _cluster_publish "$tmp" "$final" || return 1
  _cluster_blog "Kubernetes $ver binaries in $CLUSTER_K8S_BIN"
}

_cluster_build_provisioner() {
  local go ver=$CLUSTER_PROVISIONER_VERSION final tmp dir
  local mod=github.com/kubernetes-csi/external-provisioner/v5
  go=$(_cluster_go) || return 1
  final=$(dirname "$CLUSTER_PROVISIONER_BIN")
  tmp=$(mktemp -d "$CLUSTER_CACHE_ROOT/.csi-provisioner-$ver.XXXXXX") || return 1
  mkdir -p "$tmp/bin"
  _cluster_blog "building csi-provisioner $ver"
  # Its go.mod has replace directives, so `go install mod@ver` refuses it;
  # build a writable copy of the module source as the main module instead.
  dir=$(cd "$tmp" && "$go" mod download -json "$mod@$ver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d "$dir" ]] || { _cluster_blog "cannot fetch $mod@$ver"; rm -rf "$tmp"; return 1; }
  cp -r "$dir" "$tmp/src" && chmod -R u+w "$tmp/src"
  if ! (cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$go" build \
          -ldflags "-s -w -X main.version=$ver" -o "$tmp/bin/csi-provisioner" ./cmd/csi-provisioner \
          >"$tmp/build.log" 2>&1); then
    _cluster_blog "csi-provisioner build failed:"; tail -n 30 "$tmp/build.log" >&2; rm -rf "$tmp"; return 1
  fi
  rm -rf "$tmp/src"
  _cluster_publish "$tmp" "$final" || return 1
  _cluster_blog "csi-provisioner $ver in $CLUSTER_PROVISIONER_BIN"
}

# Builds whatever is missing. A lock keeps a background build started by
# up.sh and a manual run from racing on the same cache entry.
cluster_build_binaries() {
  mkdir -p "$CLUSTER_CACHE_ROOT" || return 1
  (
    flock 9 || exit 1
    # Under the lock no other build runs, so any temp dir is from a killed one.
    rm -rf "$CLUSTER_CACHE_ROOT"/.k8s-* "$CLUSTER_CACHE_ROOT"/.csi-provisioner-*
    if _cluster_cache_ok "$CLUSTER_K8S_BIN" "${CLUSTER_K8S_COMPONENTS[@]}"; then
      _cluster_blog "Kubernetes $CLUSTER_K8S_VERSION binaries cached in $CLUSTER_K8S_BIN"
    else
      _cluster_build_k8s || exit 1
    fi
    # A bare binary counts here: it is one file, renamed into place atomically
    # (the image builder may have produced it the same way).
    if [[ -x "$CLUSTER_PROVISIONER_BIN/csi-provisioner" ]]; then
      _cluster_blog "csi-provisioner $CLUSTER_PROVISIONER_VERSION cached in $CLUSTER_PROVISIONER_BIN"
    else
      _cluster_build_provisioner || exit 1
    fi
  ) 9>"$CLUSTER_CACHE_ROOT/.build.lock"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  cluster_build_binaries
fi
