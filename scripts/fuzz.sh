#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for SECONDS (default 60)
# from the committed corpora in tests/fuzz/corpus/<target>, AHG_FUZZ_JOBS (default: the number of
# cores) targets at a time, with tests/fuzz/<target>.dict when present. New inputs go to the
# build directory;
# a crash stops the run with its reproducer path. Longer runs by hand: scripts/fuzz.sh 3600
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECS=${1:-60}
BUILD=${AHG_FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
CLANG=$(command -v clang-14 || command -v clang || true)
[ -n "$CLANG" ] || { echo "fuzz: clang not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
if ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    echo "fuzz: libFuzzer runtime missing (apt-get install libclang-rt-14-dev)"; exit 1
fi
mkdir -p "$(dirname "$BUILD")"
CC=$CLANG cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DAHG_FUZZ=ON \
    -DAHG_SANITIZE=address,undefined >"$BUILD.configure.log" 2>&1 ||
    { cat "$BUILD.configure.log"; exit 1; }
TARGETS="hcmsg query http sas config"
build_args=()
for t in $TARGETS; do build_args+=(--target "fuzz_$t"); done
cmake --build "$BUILD" -j "$(nproc)" "${build_args[@]}" >"$BUILD.build.log" 2>&1 ||
    { cat "$BUILD.build.log"; exit 1; }
# The targets run AHG_FUZZ_JOBS (default: the number of cores) at a time, SECS each.
JOBS=${AHG_FUZZ_JOBS:-$(nproc)}
run_one() {
    local t=$1 work="$BUILD/corpus-$1"
    mkdir -p "$work" "$BUILD/artifacts"
    local rc=0 dict=()
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=1024 "${dict[@]}" \
        -artifact_prefix="$BUILD/artifacts/$t-" -print_final_stats=1 \
        "$work" "$ROOT/tests/fuzz/corpus/$t" >"$BUILD/fuzz-$t.log" 2>&1 || rc=$?
    echo "$rc" >"$BUILD/fuzz-$t.rc"
}
running=0
for t in $TARGETS; do
    echo "fuzz: $t for ${SECS}s"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
fail=0
for t in $TARGETS; do
    if [ "$(cat "$BUILD/fuzz-$t.rc" 2>/dev/null)" != 0 ]; then
        echo "fuzz: $t FAILED; log $BUILD/fuzz-$t.log, reproducer in $BUILD/artifacts/"
        tail -40 "$BUILD/fuzz-$t.log"
        fail=1
    else
        echo "fuzz: $t ok: $(grep -E 'stat::number_of_executed_units' "$BUILD/fuzz-$t.log" |
            tail -1) $(grep -oE 'cov: [0-9]+' "$BUILD/fuzz-$t.log" | tail -1)"
    fi
done
exit $fail
