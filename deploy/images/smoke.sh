#!/usr/bin/env bash
# Smoke test of the images deploy/images/build.sh made (ctest: images_smoke):
#   - every image: runs as uid 10001 with a read-only root filesystem, `--version` answers
#     "<name> <version>", has no shell, carries the OCI labels and no HEALTHCHECK;
#   - azhexgate (CLI): `azhexgate version`;
#   - azhexgate-emulator: started with `podman run --read-only` on host networking (ports chosen
#     by the kernel, written to a ready file on a mounted volume), GET /healthz on its admin port
#     answers 200, its process runs as uid 10001, SIGTERM stops it with exit code 0.
# Only the images build.sh listed in build/images/images.txt are checked. Exit 0 ok, 1 failure,
# 77 podman missing (ctest: skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$HERE/env.sh"
OUT=$AHG_IMAGES_DIR
command -v podman >/dev/null || { echo "smoke: podman is not installed; run scripts/install-deps.sh" >&2; exit 77; }
LIST=$OUT/images.txt

fails=0
pass() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
# expect GOT WANT WHAT: pass "WHAT: GOT" when GOT equals WANT, else fail
expect() {
    if [ "$1" = "$2" ]; then pass "$3: $1"; else fail "$3: got '$1', expected '$2'"; fi
}
[ -s "$LIST" ] || { echo "smoke: $LIST is missing: run deploy/images/build.sh first" >&2; exit 1; }

CID=""
TMP=$(mktemp -d)
cleanup() {
    [ -z "$CID" ] || podman rm -f -t 0 "$CID" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

while IFS=$'\t' read -r name version _size; do
    img=localhost/$name:$version
    podman image exists "$img" || { fail "$img is listed in $LIST but not in podman's storage"; continue; }

    got=$(podman run --rm --read-only --network host "$img" --version 2>&1) || true
    expect "$got" "$name $version" "$name --version"

    user=$(podman image inspect --format '{{.Config.User}}' "$img")
    expect "$user" "10001:10001" "$name image user"

    for l in title description version revision created; do
        v=$(podman image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$l\"}}" "$img")
        case "$v" in '' | '<no value>') fail "$name has no org.opencontainers.image.$l label" ;; esac
    done
    expect "$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.title"}}' "$img")" \
        "$name" "$name OCI title label"
    if podman image inspect "$img" | grep -qi '"healthcheck"'; then
        fail "$name has a HEALTHCHECK (Kubernetes probes use the admin port)"
    else
        pass "$name has no HEALTHCHECK"
    fi

    # The filesystem: what must be there (binary, loader, CA trust where OpenSSL and libcurl
    # look, the user, dpkg records) and what must not (shells, package managers, coreutils).
    before=$fails
    ctr=$(podman create "$img")
    podman export -o "$TMP/fs.tar" "$ctr"
    podman rm "$ctr" >/dev/null
    tar -tf "$TMP/fs.tar" | sed 's#/$##' | sort >"$TMP/files"
    for f in "usr/bin/$name" usr/lib64/ld-linux-x86-64.so.2 usr/lib/x86_64-linux-gnu/libc.so.6 \
        etc/ssl/certs/ca-certificates.crt usr/lib/ssl/cert.pem etc/passwd etc/group \
        etc/nsswitch.conf var/lib/dpkg/status.d/libc6 var/lib/dpkg/status.d/libwebsockets17 tmp; do
        grep -qx -- "$f" "$TMP/files" || fail "$name lacks /$f"
    done
    for f in usr/bin/sh usr/bin/bash usr/bin/dash usr/bin/ls usr/bin/cat usr/bin/dpkg usr/bin/apt; do
        if grep -qx -- "$f" "$TMP/files"; then fail "$name contains /$f"; fi
    done
    tar -xOf "$TMP/fs.tar" etc/passwd | grep -q "^azhexgate:x:10001:10001:" ||
        fail "$name: /etc/passwd has no user azhexgate with uid 10001"
    rm -f "$TMP/fs.tar"
    [ $fails -ne $before ] || pass "$name filesystem: $(wc -l <"$TMP/files") entries, binary, libraries, CA trust, no shell or package manager"

    if podman run --rm --read-only --network none --entrypoint /bin/sh "$img" -c true >/dev/null 2>&1; then
        fail "$name can run /bin/sh"
    else
        pass "$name cannot run /bin/sh"
    fi

    case "$name" in
    azhexgate)
        got=$(podman run --rm --read-only --network host "$img" version 2>&1) || true
        expect "$got" "azhexgate $version" "azhexgate version"
        ;;
    azhexgate-emulator)
        mkdir -p "$TMP/run"
        chown 10001:10001 "$TMP/run"
        CID=$(podman run -d --read-only --network host -v "$TMP/run:/run/azhexgate" "$img" \
            --log-format json --emulator-relay-port 0 --emulator-mgmt-port 0 \
            --emulator-identity-port 0 --emulator-admin-port 0 \
            --emulator-ready-file /run/azhexgate/ready)
        # The ready file appears (atomically, by rename) once every listener is bound; the
        # container exiting first is a failure.
        for _ in $(seq 1 300); do
            [ -s "$TMP/run/ready" ] && break
            [ "$(podman inspect --format '{{.State.Running}}' "$CID")" = true ] || break
            sleep 0.1
        done
        if [ ! -s "$TMP/run/ready" ]; then
            fail "the emulator container wrote no ready file; its log:"
            podman logs "$CID" >&2 || true
        else
            admin=$(sed -n 's/^admin_port=//p' "$TMP/run/ready")
            code=$(curl -s -o "$TMP/healthz" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$admin/healthz") || true
            expect "$code" 200 "emulator GET http://127.0.0.1:$admin/healthz"
            pid=$(podman inspect --format '{{.State.Pid}}' "$CID")
            uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
            expect "$uid" 10001 "emulator process uid"
            ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$CID")
            expect "$ro" true "emulator ReadonlyRootfs"
        fi
        podman stop -t 10 "$CID" >/dev/null
        rc=$(podman inspect --format '{{.State.ExitCode}}' "$CID")
        expect "$rc" 0 "emulator exit code after SIGTERM"
        [ "$rc" = 0 ] || podman logs "$CID" >&2 || true
        podman rm -f "$CID" >/dev/null
        CID=""
        ;;
    esac
done <"$LIST"

if [ $fails -ne 0 ]; then
    echo "smoke: $fails check(s) failed" >&2
    exit 1
fi
echo "smoke: all checks passed"
