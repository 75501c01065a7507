#!/usr/bin/env bash
# Installs every Debian package AzHexGate needs to build, run and test.
# Safe to run any number of times; does nothing when everything is present.
set -euo pipefail

PKGS=(
    build-essential cmake pkg-config git ca-certificates
    libwebsockets-dev libssl-dev libcurl4-openssl-dev libcjson-dev libhiredis-dev
    libyaml-dev libhttp-parser-dev libcmocka-dev
    # the epoll event loop: lws's libev plugin and libev, loaded at run time (common/src/net.c
    # falls back to poll() without them)
    libev4 libwebsockets-evlib-ev
    redis-server clang-format clang-tidy clang libclang-rt-14-dev iproute2 iptables
    chromium
    # container images (deploy/images/build.sh): debootstrap makes the base, podman/buildah
    # build and run on runc; uidmap, slirp4netns, fuse-overlayfs complete podman; catatonit
    # is the pause process of `podman kube play` pods (deploy/local)
    podman buildah runc conmon containernetworking-plugins debootstrap uidmap slirp4netns
    fuse-overlayfs catatonit
)

# node and npm (interop, browser and infra suites): Debian's packages only when no node is
# installed, since a node from elsewhere (nodesource) ships its own npm and conflicts with them.
if ! command -v node >/dev/null 2>&1; then
    PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
