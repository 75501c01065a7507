#!/usr/bin/env bash
# Controller benchmark: POST /api/tunnels with a warm pool vs without while ARM takes 2 s, and
# 10,000 live sessions (controller RSS, reconcile pass duration). Builds a release build and
# writes bench/results/controller.json and bench/results/controller.md.
#   bench/controller.sh [SESSIONS (default 10000)] [SAMPLES (default 20)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SESSIONS=${1:-10000}
SAMPLES=${2:-20}
BUILD=${AHG_BENCH_BUILD_DIR:-$ROOT/build/bench}
mkdir -p "$(dirname "$BUILD")" "$ROOT/bench/results"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target azhexgate-controller ctl-bench >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$BUILD/bench/ctl-bench" "$BUILD/controller/azhexgate-controller" "$ROOT/bench/results" \
    "$SESSIONS" "$SAMPLES"
