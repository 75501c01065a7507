#!/usr/bin/env bash
# Checks that deploy/local/emulator.yaml runs under `podman kube play` (ctest: images_kube_play):
# the pod starts from localhost/azhexgate-emulator (deploy/images/build.sh), as uid 10001 with a
# read-only root filesystem, GET /healthz on its admin port answers 200, `podman kube down`
# removes it. So that it cannot collide with other emulators on the machine, the manifest is
# played with kernel-chosen relay/mgmt/identity ports and a free admin port.
# Exit 0 ok, 1 failure, 77 podman missing (ctest: skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/../images
. "$HERE/../images/env.sh"
# shellcheck source-path=SCRIPTDIR
. "$HERE/lib.sh"
command -v podman >/dev/null || { echo "kube-play: podman is not installed; run scripts/install-deps.sh" >&2; exit 77; }
IMG=localhost/azhexgate-emulator:latest
podman image exists "$IMG" || { echo "kube-play: no $IMG: run deploy/images/build.sh first" >&2; exit 1; }

port=$(free_port)

TMP=$(mktemp -d)
POD=azhexgate-emulator-kp$$
MANIFEST=$TMP/emulator.yaml
cleanup() {
    podman kube down "$MANIFEST" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
sed -e "s/^  name: azhexgate-emulator$/  name: $POD/" \
    -e "s/^      args: \[\(.*\)\]$/      args: [\1, \"--emulator-relay-port\", \"0\", \"--emulator-mgmt-port\", \"0\", \"--emulator-identity-port\", \"0\", \"--emulator-admin-port\", \"$port\"]/" \
    "$HERE/emulator.yaml" >"$MANIFEST"
grep -q "\"$port\"" "$MANIFEST" || { echo "kube-play: could not rewrite the args of emulator.yaml" >&2; exit 1; }

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
podman kube play "$MANIFEST" >"$TMP/play.log" 2>&1 || { cat "$TMP/play.log" >&2; exit 1; }
CTR=$POD-emulator
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz") || true
    [ "$code" = 200 ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$CTR" 2>/dev/null)" = true ] || break
    sleep 0.1
done
if [ "$code" = 200 ]; then echo "ok: pod $POD: /healthz on 127.0.0.1:$port answers 200"; else
    fail "/healthz answered $code"
    podman logs "$CTR" >&2 || true
fi
pid=$(podman inspect --format '{{.State.Pid}}' "$CTR")
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo none)
if [ "$uid" = 10001 ]; then echo "ok: the emulator runs as uid 10001"; else fail "the emulator runs as uid $uid"; fi
# the epoll event loop (libev + lws's plugin, loaded at run time) made it into the image
if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q 'anon_inode:\[eventpoll\]'; then
    echo "ok: the emulator runs the epoll event loop"
else
    fail "the emulator has no epoll descriptor: the image runs poll() (libev or its lws plugin missing)"
fi
ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$CTR")
if [ "$ro" = true ]; then echo "ok: read-only root filesystem"; else fail "ReadonlyRootfs is $ro"; fi
podman kube down "$MANIFEST" >/dev/null
podman pod exists "$POD" && fail "pod $POD still exists after kube down"
[ $fails -eq 0 ] || exit 1
echo "kube-play: all checks passed"
