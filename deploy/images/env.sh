# shellcheck shell=bash
# Source this to use podman with the configuration and storage of deploy/images/build.sh:
#   . deploy/images/env.sh && podman images
# Sets AHG_REPO_ROOT, AHG_IMAGES_DIR (default <repo>/build/images), CONTAINERS_CONF (runc,
# nofile/nproc 1024: deploy/images/containers.conf) and CONTAINERS_STORAGE_CONF (a storage.conf
# under AHG_IMAGES_DIR keeping images in AHG_IMAGES_DIR/storage; driver overlay, or
# AHG_STORAGE_DRIVER=vfs where overlay cannot mount). skip_mount_home: the overlay driver does not
# bind-mount its home (storage/overlay) onto itself, a mount that outlives podman and makes
# `rm -rf build` fail with "Device or resource busy" (deploy/images/unmount.sh removes the rest).
AHG_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AHG_IMAGES_DIR=${AHG_IMAGES_DIR:-$AHG_REPO_ROOT/build/images}
export AHG_REPO_ROOT AHG_IMAGES_DIR
export CONTAINERS_CONF=$AHG_REPO_ROOT/deploy/images/containers.conf
export CONTAINERS_STORAGE_CONF=$AHG_IMAGES_DIR/storage.conf
mkdir -p "$AHG_IMAGES_DIR"
_ahg_storage="[storage]
driver = \"${AHG_STORAGE_DRIVER:-overlay}\"
graphroot = \"$AHG_IMAGES_DIR/storage\"
runroot = \"$AHG_IMAGES_DIR/run\"
[storage.options.overlay]
skip_mount_home = \"true\""
if [ "$(cat "$CONTAINERS_STORAGE_CONF" 2>/dev/null)" != "$_ahg_storage" ]; then
    printf '%s\n' "$_ahg_storage" >"$CONTAINERS_STORAGE_CONF"
fi
unset _ahg_storage
