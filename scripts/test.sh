#!/usr/bin/env bash
# The one test command (npm test, and .ci/run): installs the real parts the tests need when they are
# missing, builds, and runs every test file against real PostgreSQL, radosgw and docker-registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
[ -d node_modules ] || npm ci
npm run build --silent
mapfile -t files < <(if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; else find test -name '*.test.ts' | sort; fi)
exec node --import tsx --test --test-concurrency=2 --test-timeout=900000 --test-reporter=spec "${files[@]}"
