#!/usr/bin/env bash
# Installs the npm packages of the interop suite (tests/interop/package-lock.json) into
# tests/interop/node_modules with `npm ci`. Safe to run any number of times: does nothing when
# node_modules already matches the lock file and this node version. Without node it only says
# so (the interop tests then skip).
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/tests/interop"

if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq nodejs npm >/dev/null 2>&1 || true
fi
if ! command -v node >/dev/null 2>&1; then
    echo "interop-deps: node is not installed; the interop tests will be skipped" >&2
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "interop-deps: npm is not installed" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "interop-deps: node >= 20 is required (found $(node --version)); the interop tests will be skipped" >&2
    exit 0
fi

stamp="$dir/node_modules/.interop-stamp"
want="$(sha256sum "$dir/package-lock.json" "$dir/package.json" | sha256sum | cut -d' ' -f1) $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "interop-deps: npm ci in $dir" >&2
# Concurrent runs (ctest -j) wait for one another.
exec 9>"${TMPDIR:-/tmp}/ahg-interop-deps-$(printf '%s' "$dir" | sha256sum | cut -c1-16).lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
# The registry is sometimes slow to answer: bounded timeouts, a few whole retries.
for attempt in 1 2 3; do
    if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error \
            --fetch-timeout=60000 --fetch-retries=4); then
        break
    fi
    [ "$attempt" -lt 3 ] || { echo "interop-deps: npm ci failed" >&2; exit 1; }
    echo "interop-deps: npm ci failed (attempt $attempt); retrying" >&2
    sleep $((attempt * 5))
done
echo "$want" >"$stamp"
