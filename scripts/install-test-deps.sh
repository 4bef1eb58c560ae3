#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root):
# Debian packages, the Go-built test peers, and the npm packages. Idempotent: what is
# already present is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
# Go builds the test peers; a fresh machine may have it installed but not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi

# Test peers built from Go modules: pinned versions the Go module proxy serves.
CSI_SANITY_VERSION=v5.6.0
ORAS_VERSION=v1.3.6
CRANE_VERSION=v0.22.1
HELM_VERSION=v3.22.0
COSIGN_VERSION=v2.6.5

apt_packages=(docker-registry skopeo zstd shellcheck apache2-utils util-linux util-linux-extra mount curl ca-certificates openssl)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a registry service on :5000; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

GOBIN="$(go env GOPATH)/bin"
go_tool() { # name module version
  if [ ! -x "$GOBIN/$1" ] || [ "$(cat "$GOBIN/.$1.version" 2>/dev/null)" != "$3" ]; then
    echo "install-test-deps: go install $2@$3"
    go install "$2@$3"
    echo "$3" > "$GOBIN/.$1.version"
  fi
}
go_tool csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "$CSI_SANITY_VERSION"
go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION"

npm ci --no-audit --no-fund
