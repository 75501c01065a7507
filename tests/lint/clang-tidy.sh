#!/usr/bin/env bash
# clang-tidy with the checks of .clang-tidy, warnings as errors, over every library source in
# the compilation database. Usage: clang-tidy.sh BUILD_DIR SOURCE_ROOT
set -euo pipefail
build=$1
root=$2
tidy=$(command -v clang-tidy-14 || command -v clang-tidy)
files=$(python3 -c '
import json, re, sys
db = json.load(open(sys.argv[1] + "/compile_commands.json"))
pat = re.compile(re.escape(sys.argv[2]) + r"/(common|emulator|gateway|controller|client|sidecar)/.*\.c$")
print("\n".join(sorted({e["file"] for e in db if pat.match(e["file"])})))
' "$build" "$root")
[ -n "$files" ] || { echo "no sources found"; exit 1; }
echo "$files" | xargs -P "$(nproc)" -n 1 "$tidy" -p "$build" --quiet --warnings-as-errors='*' \
    2>/dev/null
echo "clang-tidy clean: $(echo "$files" | wc -l) files"
