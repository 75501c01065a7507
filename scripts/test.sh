#!/usr/bin/env bash
# The test command: installs what the tests need, builds with -Werror and ASan+UBSan,
# runs the whole ctest suite and prints its summary. .ci/run calls exactly this.
#   scripts/test.sh [extra ctest args, e.g. -L unit]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AHG_TEST_BUILD_DIR:-$ROOT/build/test}
JOBS=${AHG_JOBS:-$(nproc)}

"$ROOT/scripts/install-deps.sh"
"$ROOT/scripts/npm-deps.sh"

mkdir -p "$(dirname "$BUILD")"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DAHG_WERROR=ON \
    -DAHG_SANITIZE=address,undefined >"$BUILD.configure.log" 2>&1 ||
    { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j "$JOBS"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" "$@"
