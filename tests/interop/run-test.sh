#!/usr/bin/env bash
# ctest driver of the interop suite.
#   run-test.sh --deps          install the npm packages (scripts/interop-deps.sh)
#   run-test.sh FILE.test.js    run one node:test file against AHG_EMULATOR
# Exits 77 (ctest: skipped) only when node is not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "interop: node >= 20 is not installed; skipping" >&2
    exit 77
fi
if [ "${1:-}" = "--deps" ]; then
    exec "$root/scripts/interop-deps.sh"
fi
[ $# -eq 1 ] || { echo "usage: $0 --deps | FILE.test.js" >&2; exit 64; }
if [ ! -d "$here/node_modules/hyco-https" ] || [ ! -d "$here/node_modules/@azure/arm-relay" ]; then
    echo "interop: npm packages missing; run scripts/interop-deps.sh" >&2
    exit 1
fi
: "${AHG_EMULATOR:?AHG_EMULATOR must name the azhexgate-emulator executable}"

# Node reads NODE_EXTRA_CA_CERTS at start-up only: trust the test CA for the management port.
export NODE_EXTRA_CA_CERTS="$root/tests/fixtures/certs/ca.pem"
# Everything is on loopback: never through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
# Quiet, deterministic Azure SDKs.
unset AZURE_LOG_LEVEL AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST
unset AZURE_FEDERATED_TOKEN_FILE IDENTITY_ENDPOINT IDENTITY_HEADER MSI_ENDPOINT MSI_SECRET
unset IMDS_ENDPOINT AZURE_POD_IDENTITY_AUTHORITY_HOST

cd "$here"
exec node --test --test-reporter=spec "$1"
