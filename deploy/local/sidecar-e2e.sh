#!/usr/bin/env bash
# The sidecar e2e (ctest: images_sidecar_e2e; deploy/local/README.md): the Helm chart's sidecar
# example, rendered by `helm template`, runs under `podman kube play` (the app container plus
# azhexgate-sidecar from deploy/images/build.sh) against azhexgate-server on the host, and the
# public URL serves the app through the gateway.
#   classic mode: the sidecar gets ready (/readyz on its admin port), GET http://<id>.localhost:
#     <port>/ answers the example's page, `podman kube down` stops the pod: readiness turns false
#     at once (drain delay), the sidecar releases its tunnel (DELETE), exits 0, and the URL then
#     answers 404;
#   native mode (init container with restartPolicy: Always): podman 4.3 runs init containers to
#     completion before it starts the app, so `kube play` blocks with the app never started;
#     that behaviour is checked and reported (a podman that starts the app gets the classic
#     checks instead).
#   deploy/local/sidecar-e2e.sh [classic|native|all]     (default all)
# Needs the images of deploy/images/build.sh (and its Release azhexgate-server, or
# AHG_SERVER_BIN), helm (scripts/infra-deps.sh helm) and, once, Debian's busybox-static package
# (apt-get download) for the app image. Exit 0 ok, 1 failure, 77 podman or helm missing (skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/../images
. "$HERE/../images/env.sh"
# shellcheck source-path=SCRIPTDIR
. "$HERE/lib.sh"
ROOT=$AHG_REPO_ROOT
MODES=${1:-all}
case "$MODES" in all) MODES="classic native" ;; classic | native) ;; *)
    echo "usage: $0 [classic|native|all]" >&2
    exit 64
    ;;
esac

say() { echo "sidecar-e2e: $*"; }
command -v podman >/dev/null || { say "podman is not installed; run scripts/install-deps.sh" >&2; exit 77; }
rc=0
HELM=$("$ROOT/scripts/infra-deps.sh" helm) || rc=$?
[ "$rc" -ne 77 ] || { say "SKIPPED: helm cannot be installed here (reason above)" >&2; exit 77; }
[ "$rc" -eq 0 ] || exit "$rc"
VERSION=$(sed -n 's/^project(azhexgate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
podman image exists "localhost/azhexgate-sidecar:$VERSION" ||
    { say "no localhost/azhexgate-sidecar:$VERSION: run deploy/images/build.sh first" >&2; exit 1; }
SERVER=${AHG_SERVER_BIN:-$(find "$AHG_IMAGES_DIR/release" -name azhexgate-server -type f -perm -u+x 2>/dev/null | head -1)}
[ -x "$SERVER" ] || { say "no azhexgate-server (build.sh's Release build, or set AHG_SERVER_BIN)" >&2; exit 1; }
APP_IMAGE=localhost/busybox:bookworm-static

TMP=$(mktemp -d)
SECRET=azhexgate-e2e-key-$$
SPID="" PLAYPID="" PLAYED=""
cleanup() {
    [ -z "$PLAYPID" ] || kill "$PLAYPID" 2>/dev/null || true
    [ -z "$PLAYED" ] || podman kube down "$PLAYED" >/dev/null 2>&1 || true
    podman secret rm "$SECRET" >/dev/null 2>&1 || true
    [ -z "$SPID" ] || { kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null; } || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fails=0
pass() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
expect() { # expect GOT WANT WHAT
    if [ "$1" = "$2" ]; then pass "$3: $1"; else fail "$3: got '$1', expected '$2'"; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

# --- the app image: busybox httpd without a registry ------------------------------------------
# FROM scratch with Debian's statically linked busybox and its applet links, as the Docker
# Hub busybox image is laid out; the chart's default app is `httpd -f -v -p 3000 -h /www`.
if ! podman image exists "$APP_IMAGE"; then
    debs=$AHG_IMAGES_DIR/debs/app
    mkdir -p "$debs" "$TMP/app/bin" "$TMP/app/tmp"
    deb=$(find "$debs" -name 'busybox-static_*.deb' | head -1)
    if [ -z "$deb" ]; then
        (cd "$debs" && apt-get download busybox-static >"$TMP/apt.log" 2>&1) ||
            { cat "$TMP/apt.log" >&2; say "apt-get download busybox-static failed" >&2; exit 1; }
        deb=$(find "$debs" -name 'busybox-static_*.deb' | head -1)
    fi
    dpkg-deb -x "$deb" "$TMP/deb"
    cp "$TMP/deb/bin/busybox" "$TMP/app/bin/"
    for a in $("$TMP/deb/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -s busybox "$TMP/app/bin/$a"
    done
    chmod 1777 "$TMP/app/tmp"
    tar --numeric-owner -C "$TMP/app" -cf "$TMP/app.tar" .
    podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["sh"]' \
        --change "LABEL org.opencontainers.image.description=busybox $(dpkg-deb -f "$deb" Version) (Debian busybox-static) for deploy/local" \
        "$TMP/app.tar" "$APP_IMAGE" >/dev/null
    rm -rf "$TMP/deb" "$TMP/app" "$TMP/app.tar"
    say "imported $APP_IMAGE from $(basename "$deb")"
fi

# --- the server on the host ---------------------------------------------------------------------
# --port 0: the server picks a free port, names it in its ready file and in the public URLs.
"$SERVER" --domain localhost --port 0 --admin-port 0 --store memory: \
    --emulator-relay-port 0 --emulator-mgmt-port 0 --emulator-identity-port 0 --emulator-admin-port 0 \
    --api-key-out "$TMP/api-key" --ready-file "$TMP/server.ready" --log-format json \
    >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 1 200); do
    [ -s "$TMP/server.ready" ] && grep -q '^ready=1' "$TMP/server.ready" && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
done
grep -q '^ready=1' "$TMP/server.ready" 2>/dev/null ||
    { cat "$TMP/server.log" >&2; say "azhexgate-server did not become ready" >&2; exit 1; }
PORT=$(sed -n 's/^port=//p' "$TMP/server.ready")
say "azhexgate-server on 127.0.0.1:$PORT (pid $SPID, $SERVER)"

# The API key as a podman secret. podman 4.3 `kube play` writes the `data` values of the secret
# to the volume as they are (no base64 decoding; `stringData` and `items` are ignored), so the
# secret holds the key in plain text rather than a kind: Secret in the played YAML.
printf 'data:\n  api-key: "%s"\n' "$(cat "$TMP/api-key")" >"$TMP/secret.yaml"
podman secret create "$SECRET" "$TMP/secret.yaml" >/dev/null

# render MODE -> $TMP/MODE.yaml, the manifest to play (sets PLAYED), with free ports for the app
# and the sidecar's admin listener; sets app, admin, POD, NAME, sctr, actr and GRACE for run_MODE
render() {
    local mode=$1 rel=e2e$$${1:0:1}
    app=$(free_port)
    admin=$(free_port)
    "$HELM" template "$rel" "$ROOT/charts/azhexgate" -f "$HERE/sidecar-values.yaml" \
        --set "sidecarExample.mode=$mode" \
        --set "sidecarExample.sidecar.apiUrl=http://api.localhost:$PORT" \
        --set "sidecarExample.sidecar.apiKeySecret=$SECRET" \
        --set "sidecarExample.sidecar.adminPort=$admin" \
        --set "sidecarExample.app.port=$app" \
        --set-json "sidecarExample.app.command=[\"sh\",\"-c\",\"trap 'exit 0' TERM; httpd -f -v -p $app -h /www & wait\"]" \
        --show-only templates/sidecar-example.yaml >"$TMP/$mode.rendered.yaml"
    # The one edit of the rendered YAML: podman 4.3 refuses `fieldPath: metadata.namespace`
    # ("fieldPath metadata.namespace is either not valid or not supported"); its pods have no
    # namespace, so the variable gets the literal "default".
    awk '/- name: AZHEXGATE_POD_NAMESPACE$/ { print; getline; sub(/valueFrom:.*/, "value: \"default\""); print; getline; getline; next } { print }' \
        "$TMP/$mode.rendered.yaml" >"$TMP/$mode.yaml"
    if grep -q 'metadata.namespace' "$TMP/$mode.yaml" || ! grep -q 'value: "default"' "$TMP/$mode.yaml"; then
        say "the namespace edit did not apply to the rendered chart" >&2
        exit 1
    fi
    GRACE=$(sed -n 's/^ *terminationGracePeriodSeconds: *\([0-9]*\)$/\1/p' "$TMP/$mode.yaml")
    POD=$rel-azhexgate-sidecar-example-pod-0
    NAME=$rel-azhexgate-sidecar-example
    sctr=$POD-azhexgate-sidecar actr=$POD-app
    PLAYED=$TMP/$mode.yaml
}

# wait_ready ADMIN CTR: /readyz of the sidecar answers 200 (60 s at most, the container must run)
wait_ready() {
    local code=000
    for _ in $(seq 1 600); do
        code=$(BODY=$TMP/readyz http_code "http://127.0.0.1:$1/readyz")
        [ "$code" = 200 ] && break
        [ "$(podman inspect --format '{{.State.Running}}' "$2" 2>/dev/null)" = true ] || break
        sleep 0.1
    done
    echo "$code"
}

# sidecar_log CTR: the sidecar's log so far, to $TMP/sidecar.log (the container must exist)
sidecar_log() {
    podman logs "$1" >"$TMP/sidecar.log" 2>&1 || true
}

# public_url: the URL the sidecar logged ("Tunnel established: public URL ...")
public_url() {
    sed -n 's/.*Tunnel established: public URL \(http[^ ]*\) forwarding.*/\1/p' "$TMP/sidecar.log" | tail -1
}

# get URL: GET the public URL through the gateway (*.localhost is 127.0.0.1), body in $TMP/body
get() {
    local hostport=${1#http://}
    hostport=${hostport%%/*}
    BODY=$TMP/body http_code "$1" --resolve "${hostport}:127.0.0.1"
}

run_classic() {
    local app admin t code url sctr actr
    render classic
    grep -q 'AZHEXGATE_SIDECAR_DRAIN_DELAY' "$TMP/classic.yaml" || fail "classic mode renders no AZHEXGATE_SIDECAR_DRAIN_DELAY"
    t=$(now)
    podman kube play "$PLAYED" >"$TMP/play.log" 2>&1 || { cat "$TMP/play.log" >&2; fail "podman kube play (classic) failed"; return; }
    code=$(wait_ready "$admin" "$sctr")
    if [ "$code" != 200 ]; then
        fail "classic: the sidecar's /readyz answered $code ($(cat "$TMP/readyz" 2>/dev/null))"
        podman logs "$sctr" >&2 || true
        podman logs "$actr" >&2 || true
        return
    fi
    pass "classic: pod $POD played, sidecar ready on 127.0.0.1:$admin after $(since "$t") s"
    for c in "$sctr" "$actr"; do
        pid=$(podman inspect --format '{{.State.Pid}}' "$c")
        expect "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")" 10001 "classic: $c uid"
        expect "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" true "classic: $c read-only root"
    done
    sidecar_log "$sctr"
    url=$(public_url)
    case "$url" in http://*.localhost:"$PORT"/ | http://*.localhost:"$PORT") ;; *)
        fail "classic: no public URL on 127.0.0.1:$PORT in the sidecar's log ('$url')"
        cat "$TMP/sidecar.log" >&2
        return
        ;;
    esac
    # the subdomain derived from the pod's name (the chart sets no AZHEXGATE_SUBDOMAIN)
    case "$url" in "http://${POD:0:20}"*) pass "classic: subdomain derived from the pod name: $url" ;;
    *) fail "classic: $url is not derived from the pod name $POD" ;; esac
    code=$(get "$url")
    expect "$code" 200 "classic: GET $url through the gateway"
    if grep -qF "Served by the app container of $NAME through azhexgate-sidecar." "$TMP/body"; then
        pass "classic: the body is the example's page (ConfigMap $NAME, busybox httpd)"
    else
        fail "classic: unexpected body: $(head -c 300 "$TMP/body")"
    fi

    # kube down: SIGTERM to both containers; the sidecar turns unready at once but serves on
    # through the drain delay, then releases the tunnel and exits 0.
    t=$(now)
    podman pod stop -t "$GRACE" "$POD" >"$TMP/down.log" 2>&1 &
    local downpid=$! saw="" body
    for _ in $(seq 1 100); do
        code=$(BODY=$TMP/readyz http_code "http://127.0.0.1:$admin/readyz")
        [ "$code" = 503 ] && { saw=$(cat "$TMP/readyz"); break; }
        sleep 0.05
    done
    case "$saw" in *draining*) pass "classic: during the drain delay /readyz answers 503 ($saw)" ;;
    *) fail "classic: no 503 'draining' from /readyz after SIGTERM (last: $code $saw)" ;; esac
    wait "$downpid" || { cat "$TMP/down.log" >&2; fail "podman pod stop failed"; }
    say "classic: podman pod stop -t $GRACE took $(since "$t") s"
    sidecar_log "$sctr"
    podman kube down "$PLAYED" >"$TMP/down.log" 2>&1 || { cat "$TMP/down.log" >&2; fail "podman kube down failed"; }
    PLAYED=""
    podman pod exists "$POD" && fail "classic: pod $POD still exists after kube down"
    code=$(podman events --stream=false --since 10m --filter "container=$sctr" --filter event=died \
        --format '{{.ContainerExitCode}}' 2>/dev/null | tail -1)
    expect "$code" 0 "classic: azhexgate-sidecar exit code after kube down"
    for line in "serving for 5.0s more before draining" "draining: no new streams" "released"; do
        if grep -q "$line" "$TMP/sidecar.log"; then pass "classic: sidecar log: '$line'"; else
            fail "classic: the sidecar's log lacks '$line'"
        fi
    done
    if grep -q '"method":"DELETE","target":"/api/tunnels/[^"]*","status":204' "$TMP/server.log"; then
        pass "classic: the server's access log has the DELETE of the tunnel (204)"
    else
        fail "classic: the server's access log has no DELETE /api/tunnels/... 204"
    fi
    code=$(get "$url")
    expect "$code" 404 "classic: GET $url after the pod is gone"
    [ $fails -eq 0 ] || { echo "--- sidecar log" >&2; cat "$TMP/sidecar.log" >&2; }
}

run_native() {
    local app admin t code url sctr actr state
    render native
    grep -q 'restartPolicy: Always' "$TMP/native.yaml" || fail "native mode renders no restartPolicy: Always"
    t=$(now)
    podman kube play "$PLAYED" >"$TMP/play.log" 2>&1 &
    PLAYPID=$!
    # the sidecar (an init container here) comes up first
    for _ in $(seq 1 300); do
        [ "$(BODY=/dev/null http_code "http://127.0.0.1:$admin/healthz")" = 200 ] && break
        kill -0 "$PLAYPID" 2>/dev/null || break
        sleep 0.1
    done
    # ready once the app runs beside it; 10 s are plenty (classic mode needs about 3)
    for _ in $(seq 1 50); do
        code=$(BODY=$TMP/readyz http_code "http://127.0.0.1:$admin/readyz")
        [ "$code" = 200 ] && break
        sleep 0.2
    done
    sidecar_log "$sctr"
    if [ "$code" = 200 ]; then
        # A podman that runs native sidecars: the app started beside the sidecar.
        wait "$PLAYPID" || fail "podman kube play (native) failed: $(cat "$TMP/play.log")"
        PLAYPID=""
        url=$(public_url)
        code=$(get "$url")
        expect "$code" 200 "native: GET $url through the gateway"
        grep -qF "Served by the app container of $NAME" "$TMP/body" || fail "native: unexpected body"
    else
        # podman 4.3: init containers run to completion before the app is created; the
        # sidecar never completes, so `kube play` blocks and the app never starts.
        state=$(podman inspect --format '{{.State.Status}}' "$actr" 2>/dev/null || echo absent)
        expect "$(podman inspect --format '{{.State.Status}}' "$sctr")" running "native: the sidecar (init container) state"
        code=$(BODY=$TMP/readyz http_code "http://127.0.0.1:$admin/readyz")
        expect "$code" 503 "native: sidecar /readyz (the app never started)"
        if grep -q "app 127.0.0.1:$app not reachable" "$TMP/readyz"; then
            pass "native: /readyz says: $(cat "$TMP/readyz")"
        else
            fail "native: /readyz does not name the unreachable app: $(cat "$TMP/readyz")"
        fi
        url=$(public_url)
        [ -z "$url" ] || { code=$(get "$url"); expect "$code" 502 "native: GET $url (the tunnel is up, the app is not)"; }
        if kill -0 "$PLAYPID" 2>/dev/null && [ "$state" != running ]; then
            pass "native: after $(since "$t") s 'podman kube play' still waits for the init container to exit; app container state: $state"
            say "RECORDED: podman $(podman version --format '{{.Client.Version}}') cannot run a native sidecar: it ignores restartPolicy: Always on the init container, runs it to completion before creating the app, so kube play blocks and the app never starts"
        else
            fail "native: neither a working native sidecar nor the known podman 4.3 behaviour (kube play running: $(kill -0 "$PLAYPID" 2>/dev/null && echo yes || echo no), app: $state)"
        fi
        kill "$PLAYPID" 2>/dev/null || true
        wait "$PLAYPID" 2>/dev/null || true
        PLAYPID=""
    fi
    t=$(now)
    podman pod stop -t "$GRACE" "$POD" >"$TMP/down.log" 2>&1 || { cat "$TMP/down.log" >&2; fail "podman pod stop (native) failed"; }
    say "native: podman pod stop -t $GRACE took $(since "$t") s"
    sidecar_log "$sctr"
    podman kube down "$PLAYED" >"$TMP/down.log" 2>&1 || { cat "$TMP/down.log" >&2; fail "podman kube down (native) failed"; }
    PLAYED=""
    code=$(podman events --stream=false --since 10m --filter "container=$sctr" --filter event=died \
        --format '{{.ContainerExitCode}}' 2>/dev/null | tail -1)
    expect "$code" 0 "native: azhexgate-sidecar exit code after kube down"
    grep -q "released" "$TMP/sidecar.log" && pass "native: the sidecar released its tunnel" ||
        fail "native: the sidecar's log lacks 'released'"
}

for m in $MODES; do
    t=$(now)
    "run_$m"
    say "$m: $(since "$t") s"
done
say "wall time $(since "$T0") s"
if [ $fails -ne 0 ]; then
    echo "--- server log (tail)" >&2
    tail -20 "$TMP/server.log" >&2
    say "$fails check(s) failed" >&2
    exit 1
fi
say "all checks passed"
