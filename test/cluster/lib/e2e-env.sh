# shellcheck shell=bash
# What every cluster e2e script needs, sourced once at its top: the cluster, registry, release
# and pod-check helpers, the Go tools (oras) on PATH, and the image and timeout up.sh gave.
# Sourced with ROOT set to the repository root.
: "${ROOT:?ROOT=<repository root> before sourcing e2e-env.sh}"

# shellcheck source=test/cluster/lib/node.sh
source "$ROOT/test/cluster/lib/node.sh"
# shellcheck source=test/cluster/lib/registries.sh
source "$ROOT/test/cluster/lib/registries.sh"
# shellcheck source=test/cluster/lib/release.sh
source "$ROOT/test/cluster/lib/release.sh"
# shellcheck source=test/e2e/lib.sh
source "$ROOT/test/e2e/lib.sh"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
gopath=$(go env GOPATH)
export PATH="$gopath/bin:$PATH"

TEST_IMAGE=${TEST_IMAGE:?TEST_IMAGE=<image> from up.sh}
TIMEOUT=${E2E_TIMEOUT:-180s}
