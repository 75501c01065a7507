#!/usr/bin/env bash
# Client benchmark: the azhexgate binary between the emulator and a local app, both driven by
# cli-bench: 1 GiB down and up and a 256 MiB slow reader with the client's RSS sampled, and
# 1,000 sequential short streams. Builds a release build, starts the emulator, runs cli-bench and
# writes bench/results/client.json and bench/results/client.md.
#   bench/client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AHG_BENCH_BUILD_DIR:-$ROOT/build/bench-client}
mkdir -p "$(dirname "$BUILD")" "$ROOT/bench/results"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j 2 --target azhexgate azhexgate-emulator cli-bench >/dev/null

work=$(mktemp -d)
trap 'kill $emu 2>/dev/null || true; rm -rf "$work"' EXIT
head -c 32 /dev/urandom | base64 > "$work/key"
"$BUILD/emulator/azhexgate-emulator" \
    --emulator-relay-port 0 --emulator-mgmt-port 0 --emulator-identity-port 0 \
    --emulator-admin-port 0 --emulator-root-key-file "$work/key" \
    --emulator-hybrid-connections tp \
    --emulator-ready-file "$work/ready" --log-level warn &
emu=$!
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "emulator did not start"; exit 1; }
port=$(sed -n 's/^relay_port=//p' "$work/ready")
host=$(sed -n 's/^namespace_host=//p' "$work/ready")
result=$("$BUILD/bench/cli-bench" "$BUILD/client/azhexgate" "$port" "$host" "$(cat "$work/key")" tp)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"date":"%s","machine":{"cpu":"%s","cores":%s,"mem_kb":%s,"kernel":"%s"},"client":%s}\n' \
    "$now" "$cpu" "$(nproc)" "$(awk '/MemTotal/{print $2}' /proc/meminfo)" "$(uname -r)" \
    "$result" > "$ROOT/bench/results/client.json"
python3 - "$ROOT/bench/results/client.json" > "$ROOT/bench/results/client.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); c = d["client"]; m = d["machine"]
print(f"# Client benchmark ({d['date']})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_kb']//1024} MiB, kernel {m['kernel']}; "
      "release build; emulator, client and cli-bench (local app + sender) share the cores.\n")
print("| figure | value | target |")
print("|---|---|---|")
print(f"| 1 GiB down (local app → client → relay → sender) | {c['down_s']:.2f} s, {c['down_MBps']:.0f} MB/s | |")
print(f"| client RSS max during it | {c['rss_down_max_kb']/1024:.1f} MiB | ≤ 20 MB |")
print(f"| 1 GiB up (sender → relay → client → local app) | {c['up_s']:.2f} s, {c['up_MBps']:.0f} MB/s | |")
print(f"| client RSS max during it | {c['rss_up_max_kb']/1024:.1f} MiB | ≤ 20 MB |")
print(f"| slow reader: {c['slow_bytes']//(1024*1024)} MiB down at {c['slow_rate_Bps']//(1024*1024)} MiB/s | {c['slow_s']:.2f} s | |")
print(f"| client RSS max during it | {c['rss_slow_max_kb']/1024:.1f} MiB | ≤ 20 MB |")
print(f"| client RSS idle (tunnel up) / peak (VmHWM) | {c['rss_idle_kb']/1024:.1f} / {c['client_hwm_kb']/1024:.1f} MiB | |")
print(f"| short streams (connect → accept → rendezvous → GET 100 B → close) | {c['short_ok']} of {c['short_streams']} | |")
print(f"| median / p99 per stream | {c['short_median_ms']:.2f} / {c['short_p99_ms']:.2f} ms | |")
print(f"| client exit code after SIGINT | {c['client_exit']} | 0 |")
PY
cat "$ROOT/bench/results/client.md"
