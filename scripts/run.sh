#!/usr/bin/env bash
# The run command: installs, builds (release) and starts AzHexGate locally with the
# emulator as the embedded default. Ctrl+C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AHG_RUN_BUILD_DIR:-$ROOT/build/release}

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

started=0
if [ -x "$BUILD/emulator/azhexgate-emulator" ]; then
    "$BUILD/emulator/azhexgate-emulator" --emulator-hybrid-connections demo "$@" &
    pids+=($!)
    started=1
fi

if [ "$started" -eq 0 ]; then
    echo "run: built libahg_common; no server component exists yet (see docs/development.md)."
    exit 0
fi
wait -n "${pids[@]}"
