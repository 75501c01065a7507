#!/usr/bin/env bash
# Leaves no mount behind under the images directory (AHG_IMAGES_DIR, default build/images), so
# that `rm -rf build` works (ctest: images_unmount, the cleanup of the images tests):
#   - pods of killed test runs (images_kube_play, images_sidecar_e2e) are removed;
#   - containers podman or buildah still have mounted are unmounted (`podman unmount --all`,
#     `buildah unmount --all`); running containers are left alone and reported;
#   - any other mount point below the directory is unmounted, deepest first. The overlay
#     driver's bind mount of its home (storage/overlay onto itself) is one: env.sh now turns it
#     off (skip_mount_home), but storage used before still has it.
# Exit 0 when nothing is mounted below the directory afterwards, 1 otherwise (with the list),
# 77 podman missing (ctest: skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$HERE/env.sh"
command -v podman >/dev/null || { echo "unmount: podman is not installed" >&2; exit 77; }
DIR=$(readlink -f "$AHG_IMAGES_DIR")

# mounts_below: mount points at or below $DIR, deepest first (/proc/self/mountinfo field 5;
# octal escapes such as \040 for a space are left as they are: our paths have none)
mounts_below() {
    awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
        awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | uniq
}

# pods our own tests left behind when they were killed before their cleanup ran (a ctest
# timeout): images_kube_play's azhexgate-emulator-kpPID, images_sidecar_e2e's e2ePID[cn]-...
for pod in $(podman pod ls --format '{{.Name}}' 2>/dev/null |
    grep -E '^(azhexgate-emulator-kp[0-9]+|e2e[0-9]+[cn]-azhexgate-sidecar-example-pod-0)$' || true); do
    podman pod rm -f -t 0 "$pod" >/dev/null 2>&1 && echo "unmount: removed the left-over test pod $pod"
done
running=$(podman ps -q 2>/dev/null | wc -l)
[ "$running" -eq 0 ] || echo "unmount: $running container(s) still running; their mounts stay:" \
    "$(podman ps --format '{{.Names}}' | tr '\n' ' ')"
podman unmount --all >/dev/null 2>&1 || true
if command -v buildah >/dev/null; then buildah unmount --all >/dev/null 2>&1 || true; fi
if [ "$running" -eq 0 ]; then
    for m in $(mounts_below); do
        if umount "$m" 2>/dev/null; then echo "unmount: unmounted $m"; else echo "unmount: cannot unmount $m" >&2; fi
    done
fi
left=$(mounts_below)
if [ -n "$left" ]; then
    echo "unmount: still mounted under $DIR:" >&2
    echo "$left" >&2
    exit 1
fi
echo "unmount: nothing is mounted under $DIR"
