#!/usr/bin/env bash
# The run command: installs, builds (release) and runs AzHexGate locally.
#
#   ./scripts/run.sh [PORT] [azhexgate start options...]
#
# Starts the all-in-one server (gateway + controller + the emulator of the Azure services, on
# 127.0.0.1:8080), then `azhexgate start --port PORT` (default 3000) against it, which prints
# the public URL (http://<id>.localhost:8080). When nothing listens on PORT, the built-in demo
# app (`azhexgate demo`) serves it. Ctrl+C stops the tunnel (released cleanly), then the rest.
# Environment: AHG_RUN_BUILD_DIR (build dir), AHG_SERVER_PORT (8080), AHG_RUN_STATE (logs,
# generated API key; default build/run-state).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AHG_RUN_BUILD_DIR:-$ROOT/build/release}
STATE=${AHG_RUN_STATE:-$ROOT/build/run-state}
SERVER_PORT=${AHG_SERVER_PORT:-8080}

PORT=3000
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    PORT=$1
    shift
fi

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target azhexgate-server azhexgate >/dev/null

SERVER="$BUILD/gateway/server/azhexgate-server"
CLI="$BUILD/client/azhexgate"
mkdir -p "$STATE"
chmod 700 "$STATE"
rm -f "$STATE/ready" "$STATE/api-key"

pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
# Ctrl+C reaches the CLI (foreground); the script itself waits for it to release the tunnel.
trap ':' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_busy "$SERVER_PORT"; then
    echo "run: port $SERVER_PORT is taken; set AHG_SERVER_PORT to a free port" >&2
    exit 1
fi

# The server and the demo app run in their own sessions, so Ctrl+C goes to the CLI only and
# the tunnel is released before the server stops.
setsid "$SERVER" --port "$SERVER_PORT" --api-key-out "$STATE/api-key" \
    --ready-file "$STATE/ready" >"$STATE/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    [ -f "$STATE/ready" ] && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "run: the server did not start:" >&2
        cat "$STATE/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
[ -f "$STATE/ready" ] || { echo "run: the server did not become ready; see $STATE/server.log" >&2; exit 1; }
echo "run: server on http://*.localhost:$SERVER_PORT (log: $STATE/server.log)"

if ! port_busy "$PORT"; then
    setsid "$CLI" demo --port "$PORT" >"$STATE/demo.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do port_busy "$PORT" && break; sleep 0.1; done
    echo "run: nothing listened on port $PORT, so the demo app serves it (log: $STATE/demo.log)"
fi

set +e
"$CLI" start --port "$PORT" --api-url "http://api.localhost:$SERVER_PORT" \
    --api-key-file "$STATE/api-key" "$@"
rc=$?
set -e
exit "$rc"
