#!/usr/bin/env bash
# The one test command (npm test, and .ci/run): installs the real parts the tests need when they are
# missing, checks the formatting (prettier) and the types, builds once (no test builds dist/ while
# another runs the CLI from it), starts the one radosgw cluster the run shares, and runs every test
# file against real PostgreSQL, radosgw and docker-registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
[ -d node_modules ] || npm ci
rgw_json="$(mktemp -t regops-test-rgw-XXXXXX.json)"
rm -f "$rgw_json"
# Ceph boots while the compiler runs: the two overlap on the two cores.
node --import tsx scripts/radosgw.ts "$rgw_json" &
rgw_pid=$!
trap 'kill "$rgw_pid" 2>/dev/null || true; wait "$rgw_pid" 2>/dev/null || true; rm -f "$rgw_json"' EXIT
npm run format:check --silent
npm run typecheck --silent
npm run build --silent
while [ ! -s "$rgw_json" ]; do
  kill -0 "$rgw_pid" 2>/dev/null || { echo "the shared radosgw did not start" >&2; exit 1; }
  sleep 0.1
done
export REGOPS_TEST_RGW="$(cat "$rgw_json")"
mapfile -t files < <(if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; else find test -name '*.test.ts' | sort; fi)
# A hung test fails in minutes, not a quarter of an hour (each CLI run has its own, shorter, timeout).
node --import tsx --test --test-concurrency=2 --test-timeout=240000 --test-reporter=spec "${files[@]}"
