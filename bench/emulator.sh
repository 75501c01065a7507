#!/usr/bin/env bash
# Emulator benchmark: one spliced rendezvous stream (both directions) and memory with many idle
# listener control channels. Builds a release build, starts the emulator, runs emu-bench and
# writes bench/results/emulator.json and bench/results/emulator.md.
#   bench/emulator.sh [STREAM_BYTES (default 4 GiB)] [IDLE_LISTENERS (default 10000)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BYTES=${1:-4294967296}
IDLE=${2:-10000}
PER_HC=25
BUILD=${AHG_BENCH_BUILD_DIR:-$ROOT/build/bench}
"$ROOT/scripts/install-deps.sh"
mkdir -p "$(dirname "$BUILD")" "$ROOT/bench/results"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target azhexgate-emulator emu-bench >/dev/null

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
trap 'kill $emu 2>/dev/null || true; rm -rf "$work"' EXIT
head -c 32 /dev/urandom | base64 > "$work/key"
hcs="tp"
for ((i = 0; i < (IDLE + PER_HC - 1) / PER_HC; i++)); do hcs="$hcs,idle$i"; done
AZHEXGATE_EMULATOR_HYBRID_CONNECTIONS="$hcs" "$BUILD/emulator/azhexgate-emulator" \
    --emulator-relay-port 0 --emulator-mgmt-port 0 --emulator-identity-port 0 \
    --emulator-admin-port 0 --emulator-root-key-file "$work/key" \
    --emulator-ready-file "$work/ready" --log-level warn &
emu=$!
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "emulator did not start"; exit 1; }
port=$(sed -n 's/^relay_port=//p' "$work/ready")
host=$(sed -n 's/^namespace_host=//p' "$work/ready")
result=$("$BUILD/bench/emu-bench" "$port" "$host" "$(cat "$work/key")" "$emu" "$BYTES" "$IDLE" "$PER_HC")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"date":"%s","machine":{"cpu":"%s","cores":%s,"mem_kb":%s,"kernel":"%s"},"emulator":%s}\n' \
    "$now" "$cpu" "$(nproc)" "$(awk '/MemTotal/{print $2}' /proc/meminfo)" "$(uname -r)" \
    "$result" > "$ROOT/bench/results/emulator.json"
python3 - "$ROOT/bench/results/emulator.json" > "$ROOT/bench/results/emulator.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); e = d["emulator"]; m = d["machine"]
print(f"# Emulator benchmark ({d['date']})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_kb']//1024} MiB, kernel {m['kernel']}\n")
print("| figure | value | target |")
print("|---|---|---|")
print(f"| one spliced stream, sender → listener | {e['sender_to_listener_GBps']:.2f} GB/s | ≥ 1 GB/s |")
print(f"| one spliced stream, listener → sender | {e['listener_to_sender_GBps']:.2f} GB/s | ≥ 1 GB/s |")
print(f"| bytes per stream run | {e['stream_bytes']} | |")
print(f"| idle listener control channels open | {e['idle_listeners_open']} of {e['idle_listeners_requested']} | 10,000 |")
print(f"| emulator RSS with them | {e['emulator_rss_idle_kb']/1024:.1f} MiB | ≤ 200 MB |")
print(f"| emulator peak RSS (VmHWM) | {e['emulator_hwm_kb']/1024:.1f} MiB | |")
print(f"| RSS per idle listener | {e['rss_per_idle_listener_bytes']:.0f} B | |")
print(f"| time to open them all | {e['idle_connect_ms']} ms | |")
PY
cat "$ROOT/bench/results/emulator.md"
