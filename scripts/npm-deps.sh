#!/usr/bin/env bash
# Installs the npm packages of test suites from their committed lock files with `npm ci`.
# Usage: scripts/npm-deps.sh [DIR...]   (default: every tests/*/ with a package-lock.json)
# Safe to run any number of times and concurrently: a stamp (lock file hash + node version)
# makes a matching node_modules a no-op, and a lock file per directory serialises runs.
# Without node >= 20 it only says so (the suites that need it then skip).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq nodejs npm >/dev/null 2>&1 || true
fi
if ! command -v node >/dev/null 2>&1; then
    echo "npm-deps: node is not installed; the node-based suites will be skipped" >&2
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm-deps: npm is not installed" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "npm-deps: node >= 20 is required (found $(node --version)); the node-based suites will be skipped" >&2
    exit 0
fi

dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
    for lock in "$root"/tests/*/package-lock.json; do
        dirs+=("$(dirname "$lock")")
    done
fi

for dir in "${dirs[@]}"; do
    case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
    [ -f "$dir/package-lock.json" ] || { echo "npm-deps: no package-lock.json in $dir" >&2; exit 1; }
    stamp="$dir/node_modules/.ahg-stamp"
    want="$(sha256sum "$dir/package-lock.json" "$dir/package.json" | sha256sum | cut -d' ' -f1) $(node --version)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        continue
    fi
    (
        exec 9>"${TMPDIR:-/tmp}/ahg-npm-deps-$(printf '%s' "$dir" | sha256sum | cut -c1-16).lock"
        flock 9
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
            exit 0
        fi
        echo "npm-deps: npm ci in $dir" >&2
        # The registry is sometimes slow to answer: bounded timeouts, a few whole retries.
        for attempt in 1 2 3; do
            if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error \
                    --fetch-timeout=60000 --fetch-retries=4); then
                break
            fi
            [ "$attempt" -lt 3 ] || { echo "npm-deps: npm ci failed in $dir" >&2; exit 1; }
            echo "npm-deps: npm ci failed in $dir (attempt $attempt); retrying" >&2
            sleep $((attempt * 5))
        done
        echo "$want" >"$stamp"
    )
done
