#!/usr/bin/env bash
# ctest driver of the infra checks (label `infra`): the Helm chart charts/azhexgate and the
# Bicep templates infra/, each checked by the real tool.
#   run.sh deps helm|bicep        install the tool (scripts/infra-deps.sh)
#   run.sh helm-lint              helm lint --strict with every tests/infra/values/*.yaml
#   run.sh helm-template NAME     helm template with values/NAME.yaml, every object validated
#                                 (validate.js, kubernetes-models) against values/NAME.expect.json
#   run.sh helm-rejects           every values/bad/*.yaml is refused by values.schema.json or the
#                                 chart's own checks with the message on its '# expect:' line
#   run.sh env-names              every AZHEXGATE_* the chart and the Bicep set is an option of the
#                                 binary that gets it (envnames.js, from the option tables)
#   run.sh workflows              .github/ is consistent with the scripts it calls (workflows.js)
#   run.sh bicep-build            bicep build of infra/main.bicep and every module
#   run.sh bicep-lint             bicep lint of the same: any diagnostic fails
#   run.sh bicep-params ENV       bicep build-params infra/params/ENV.bicepparam
#   run.sh bicep-rejects [NAME]   every (or one) tests/infra/bicep-bad/*.bicepparam fails with the
#                                 diagnostic code on its '// expect:' line
# Exit 77 (ctest: skipped) only when the tool cannot be installed here; the reason is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
chart="$root/charts/azhexgate"
out="${AHG_INFRA_OUT:-${TMPDIR:-/tmp}/ahg-infra-$$}"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT

tool() { # tool helm|bicep -> path, or exit 77/1 as the install script did
    local p rc=0
    p=$("$root/scripts/infra-deps.sh" "$1") || rc=$?
    if [ "$rc" -eq 77 ]; then
        echo "infra: SKIPPED: $1 cannot be installed on this machine (reason above)" >&2
        exit 77
    fi
    [ "$rc" -eq 0 ] || exit "$rc"
    echo "$p"
}

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion; native sidecars).
kube=${AHG_KUBE_VERSION:-1.29.0}

helm_env() {
    export HELM_CACHE_HOME="$out/helm-cache" HELM_CONFIG_HOME="$out/helm-config"
    export HELM_DATA_HOME="$out/helm-data"
    export NODE_PATH="$here/node_modules"
}

bicep_env() {
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
    # The CLI checks for module restores and updates only when told to; keep it offline-safe.
    export BICEP_TRACING_ENABLED=false
}

# Bicep prints diagnostics as "file(line,col) : Level code: text" on stderr.
bicep_quiet() { # bicep_quiet LOG -> fails when LOG has any warning or error
    if grep -E ' : (Warning|Error) ' "$1" >&2; then
        echo "infra: bicep reported the diagnostics above" >&2
        return 1
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
deps)
    [ $# -eq 1 ] || { echo "usage: $0 deps helm|bicep" >&2; exit 64; }
    p=$(tool "$1")
    echo "infra: $1 is $p"
    ;;
helm-lint)
    helm=$(tool helm)
    helm_env
    n=0
    for v in "$here"/values/*.yaml; do
        echo "== helm lint --strict -f ${v#"$root"/}"
        "$helm" lint --strict --kube-version "$kube" "$chart" -f "$v"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || { echo "infra: no values files in $here/values" >&2; exit 1; }
    echo "infra: helm lint --strict passed with $n values files"
    ;;
helm-template)
    [ $# -eq 1 ] || { echo "usage: $0 helm-template NAME" >&2; exit 64; }
    helm=$(tool helm)
    helm_env
    v="$here/values/$1.yaml"
    [ -f "$v" ] || { echo "infra: $v does not exist" >&2; exit 64; }
    "$helm" template ahg "$chart" --namespace azhexgate --kube-version "$kube" -f "$v" \
        >"$out/rendered.yaml"
    # Chart tests (templates/tests) are rendered too; validate them with the rest.
    expect=()
    [ -f "$here/values/$1.expect.json" ] && expect=(--expect "$here/values/$1.expect.json")
    node "$here/validate.js" "${expect[@]}" "$out/rendered.yaml"
    if [ -n "${AHG_INFRA_KEEP:-}" ]; then cp "$out/rendered.yaml" "$AHG_INFRA_KEEP"; fi
    # NOTES.txt is rendered only by install/upgrade (which need a cluster): render it here from a
    # copy of the chart where it is a named template, and check it names the domain.
    cp -r "$chart" "$out/chart"
    { printf '{{- define "infratest.notes" -}}\n'; cat "$chart/templates/NOTES.txt"; printf '{{- end }}\n'; } \
        >"$out/chart/templates/_infratest_notes.tpl"
    printf 'notes: {{ include "infratest.notes" . | quote }}\n' >"$out/chart/templates/infratest-notes.yaml"
    "$helm" template ahg "$out/chart" --namespace azhexgate --kube-version "$kube" -f "$v" \
        --show-only templates/infratest-notes.yaml >"$out/notes.yaml"
    domain=$(node -e 'console.log(require("yaml").parse(require("fs").readFileSync(process.argv[1],"utf8")).domain)' "$v")
    node -e 'const n=require("yaml").parse(require("fs").readFileSync(process.argv[1],"utf8")).notes;
             if (!n.includes("Tunnels:") || !n.includes("api." + process.argv[2])) { console.error(n); process.exit(1) }' \
        "$out/notes.yaml" "$domain" || { echo "infra: NOTES.txt does not name the domain" >&2; exit 1; }
    echo "infra: NOTES.txt renders"
    ;;
helm-rejects)
    helm=$(tool helm)
    helm_env
    n=0
    for v in "$here"/values/bad/*.yaml; do
        want=$(sed -n 's/^# expect: //p' "$v" | head -1)
        [ -n "$want" ] || { echo "infra: $v has no '# expect:' line" >&2; exit 1; }
        if "$helm" template ahg "$chart" -f "$v" >"$out/bad.yaml" 2>"$out/bad.err"; then
            echo "infra: ${v#"$root"/} was accepted; expected an error containing: $want" >&2
            exit 1
        fi
        if ! grep -qF -- "$want" "$out/bad.err"; then
            echo "infra: ${v#"$root"/} failed, but not with '$want':" >&2
            cat "$out/bad.err" >&2
            exit 1
        fi
        echo "== ${v#"$root"/}: refused ($want)"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || { echo "infra: no files in $here/values/bad" >&2; exit 1; }
    echo "infra: $n bad values files refused"
    ;;
env-names)
    command -v node >/dev/null 2>&1 || { echo "infra: SKIPPED: node is not installed" >&2; exit 77; }
    node "$here/envnames.js" "$root"
    ;;
workflows)
    tool helm >/dev/null # npm ci of tests/infra (the yaml parser)
    node "$here/workflows.js" "$root"
    ;;
bicep-build)
    bicep=$(tool bicep)
    bicep_env
    cd "$root/infra"
    "$bicep" build --pattern '**/*.bicep' --outdir "$out/arm" 2>&1 | tee "$out/build.log"
    bicep_quiet "$out/build.log"
    n=$(find "$out/arm" -name '*.json' | wc -l)
    want=$(find . -name '*.bicep' | wc -l)
    [ "$n" -eq "$want" ] || { echo "infra: built $n templates for $want .bicep files" >&2; exit 1; }
    node -e 'const t=require(process.argv[1]); if(!t.resources||!t.outputs) process.exit(1)' \
        "$out/arm/main.json" || { echo "infra: main.json has no resources/outputs" >&2; exit 1; }
    echo "infra: bicep build produced $n ARM templates"
    ;;
bicep-lint)
    bicep=$(tool bicep)
    bicep_env
    cd "$root/infra"
    rc=0
    "$bicep" lint --pattern '**/*.bicep' >"$out/lint.log" 2>&1 || rc=$?
    cat "$out/lint.log"
    [ "$rc" -eq 0 ] || { echo "infra: bicep lint exited $rc" >&2; exit 1; }
    bicep_quiet "$out/lint.log"
    echo "infra: bicep lint clean over $(find . -name '*.bicep' | wc -l) files"
    ;;
bicep-params)
    [ $# -eq 1 ] || { echo "usage: $0 bicep-params ENV" >&2; exit 64; }
    bicep=$(tool bicep)
    bicep_env
    p="$root/infra/params/$1.bicepparam"
    [ -f "$p" ] || { echo "infra: $p does not exist" >&2; exit 64; }
    "$bicep" build-params "$p" --outfile "$out/$1.parameters.json" 2>&1 | tee "$out/params.log"
    bicep_quiet "$out/params.log"
    node -e 'const p=require(process.argv[1]).parameters; for (const k of ["environmentName","image","dnsZoneName","operatorCidrs"]) if(!p[k]) {console.error("missing "+k); process.exit(1)}
             if (p.environmentName.value !== process.argv[2]) {console.error("environmentName is "+p.environmentName.value); process.exit(1)}' \
        "$out/$1.parameters.json" "$1"
    echo "infra: $1.bicepparam builds"
    ;;
bicep-rejects)
    bicep=$(tool bicep)
    bicep_env
    n=0
    files=("$here"/bicep-bad/*.bicepparam)
    [ $# -eq 0 ] || files=("$here/bicep-bad/$1.bicepparam")
    for p in "${files[@]}"; do
        [ -f "$p" ] || { echo "infra: $p does not exist" >&2; exit 64; }
        want=$(sed -n 's|^// expect: ||p' "$p" | head -1)
        [ -n "$want" ] || { echo "infra: $p has no '// expect:' line" >&2; exit 1; }
        if "$bicep" build-params "$p" --stdout >/dev/null 2>"$out/bad.err"; then
            echo "infra: ${p#"$root"/} compiled; expected an error $want" >&2
            exit 1
        fi
        if ! grep -qF -- "$want" "$out/bad.err"; then
            echo "infra: ${p#"$root"/} failed, but not with $want:" >&2
            cat "$out/bad.err" >&2
            exit 1
        fi
        echo "== ${p#"$root"/}: refused ($want)"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || { echo "infra: no files in $here/bicep-bad" >&2; exit 1; }
    echo "infra: $n bad parameters files refused"
    ;;
*)
    echo "usage: $0 deps|helm-lint|helm-template|helm-rejects|env-names|workflows|bicep-build|bicep-lint|bicep-params|bicep-rejects ..." >&2
    exit 64
    ;;
esac
