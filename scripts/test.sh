#!/usr/bin/env bash
# The README's test command: install what the tests need, build, run every suite.
# Fails if any test fails or is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# Go builds the test peers; a fresh machine may have it installed but not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the tests make real bind mounts)" >&2
  exit 1
fi
./scripts/install-test-deps.sh
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
npm run build
npm run typecheck
# Both fail the build: the linter (eslint.config.js) and the dead-code / unused-dependency check (knip.json).
npm run lint
npm run knip
npm test
