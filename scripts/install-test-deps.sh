#!/usr/bin/env bash
# Install the system packages the integration tests need:
#   docker-registry (CNCF distribution 2.8.x)            -> test/helpers/registry.ts
#   radosgw ceph-mon ceph-osd ceph-common (Ceph 16.2)   -> test/helpers/radosgw.ts
#   redis-server (the registry's blob-descriptor cache) -> test/helpers/redis.ts
#   jq (the runbooks' commands use it), openssl (the TLS tests' certificates)
# Idempotent and silent when everything is present. Debian/Ubuntu (apt-get) only.
set -euo pipefail

PACKAGES=(docker-registry radosgw ceph-mon ceph-osd ceph-common redis-server jq openssl)
# binaries the helpers run
NEEDED=(docker-registry radosgw radosgw-admin ceph-mon ceph-osd ceph monmaptool redis-server redis-cli jq openssl)

missing=()
for bin in "${NEEDED[@]}"; do
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/bin/$bin" ]; then
    missing+=("$bin")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "install-test-deps: missing: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
  for bin in "${NEEDED[@]}"; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/bin/$bin" ]; then
      echo "install-test-deps: $bin still missing after apt-get install" >&2
      exit 1
    fi
  done
  exit 0
fi

cat >&2 <<EOF
install-test-deps: cannot install automatically (need root and apt-get).
Install these packages (Debian 12 / Ubuntu: distribution 2.8.x and Ceph 16.2 or newer):
  sudo apt-get update
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES[*]}
EOF
exit 1
