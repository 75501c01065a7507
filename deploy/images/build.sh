#!/usr/bin/env bash
# Builds the AzHexGate container images (deploy/README.md) without any image registry:
#   1. a minimal Debian bookworm root filesystem made with debootstrap (variant minbase, plus the
#      runtime libraries of our binaries) is imported into podman as localhost/azhexgate-base;
#   2. the binaries are built on the host in Release mode (Debian bookworm, the same libraries);
#   3. one image per binary in deploy/images/images.list, multi-stage (Containerfile.in): the
#      build stage checks the binary against the base's libraries and lays out its runtime
#      filesystem; the runtime stage is FROM scratch: binary, libraries, CA certificates, no shell.
# Targets that do not exist in the tree yet are skipped with a message.
#
#   deploy/images/build.sh [IMAGE...]      build all images (or the named ones)
# Environment:
#   AHG_IMAGES_DIR   work and cache directory (default: <repo>/build/images): debootstrap cache,
#                    base rootfs tarball, Release build, podman storage
#   AHG_JOBS         parallel compile jobs (default 2)
#   AHG_DEBIAN_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
# Source deploy/images/env.sh to use the same podman configuration and storage by hand.
# Exit codes: 0 ok, 64 usage, 1 failure, 77 podman/debootstrap missing (ctest: skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$HERE/env.sh"
ROOT=$AHG_REPO_ROOT
OUT=$AHG_IMAGES_DIR
JOBS=${AHG_JOBS:-2}
MIRROR=${AHG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# The runtime libraries of our binaries (and CA certificates); libwebsockets 4.1 is
# libwebsockets17 in bookworm. Anything else the binaries link comes in as a dependency.
# libev4 and libwebsockets-evlib-ev: the epoll event loop, loaded at run time (collect-runtime.sh).
RUNTIME_PKGS=libwebsockets17,libwebsockets-evlib-ev,libev4,libssl3,libcurl4,libcjson1,libhiredis0.14,libyaml-0-2,libhttp-parser2.9,ca-certificates

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
-*)
    echo "images: unknown option $1 (see --help)" >&2
    exit 64
    ;;
esac

for tool in podman debootstrap cmake strip; do
    command -v "$tool" >/dev/null || {
        echo "images: $tool is not installed; run scripts/install-deps.sh" >&2
        exit 77
    }
done
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and podman's storage under $OUT need it)"
grep -q '^VERSION_CODENAME=bookworm' /etc/os-release ||
    die "the binaries are built on the host and must link Debian bookworm's libraries; run on Debian 12"

# The images: deploy/images/images.list, or the ones named on the command line.
declare -a NAMES=() TARGETS=() DESCS=()
while read -r name target desc; do
    case "$name" in '' | '#'*) continue ;; esac
    NAMES+=("$name") TARGETS+=("$target") DESCS+=("$desc")
done <"$HERE/images.list"

if [ $# -gt 0 ]; then
    for want in "$@"; do
        found=0
        for n in "${NAMES[@]}"; do [ "$n" = "$want" ] && found=1; done
        [ $found = 1 ] || { echo "images: unknown image $want (see deploy/images/images.list)" >&2; exit 64; }
    done
fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9 # one build at a time per directory

VERSION=$(sed -n 's/^project(azhexgate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
[ -n "$VERSION" ] || die "cannot read the project version from $ROOT/CMakeLists.txt"
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# --- 1. the debootstrapped base ---------------------------------------------------------------
BASE_KEY=$(echo "$SUITE minbase $RUNTIME_PKGS" | sha256sum | cut -c1-12)
BASE_IMAGE=localhost/azhexgate-base:$SUITE-$BASE_KEY
BASE_TAR=$OUT/base/rootfs-$SUITE-$BASE_KEY.tar
if podman image exists "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE is up to date"
else
    if [ ! -s "$BASE_TAR" ]; then
        log "debootstrap $SUITE (minbase + $RUNTIME_PKGS) from $MIRROR"
        mkdir -p "$OUT/debs" "$OUT/base"
        rootfs=$OUT/base/rootfs.tmp
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include="$RUNTIME_PKGS" --cache-dir="$OUT/debs" \
            "$SUITE" "$rootfs" "$MIRROR" >"$OUT/base/debootstrap.log" 2>&1 ||
            { tail -20 "$OUT/base/debootstrap.log" >&2; die "debootstrap failed (log: $OUT/base/debootstrap.log)"; }
        rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/* \
            "${rootfs:?}"/var/log/* "${rootfs:?}"/dev/*
        tar --numeric-owner -C "$rootfs" -cf "$BASE_TAR.tmp" .
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$rootfs"
    fi
    log "importing $BASE_TAR as $BASE_IMAGE"
    podman import --quiet \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.title=azhexgate-base" \
        --change "LABEL org.opencontainers.image.description=Debian $SUITE minbase (debootstrap) with the AzHexGate runtime libraries" \
        --change "LABEL org.opencontainers.image.created=$CREATED" \
        "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
podman tag "$BASE_IMAGE" "localhost/azhexgate-base:$SUITE"

# --- 2. the Release binaries -----------------------------------------------------------------
REL=$OUT/release
log "configuring the Release build in $REL"
cmake -S "$ROOT" -B "$REL" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF \
    >"$OUT/release.configure.log" 2>&1 || { cat "$OUT/release.configure.log" >&2; die "cmake configure failed"; }
avail=$(cmake --build "$REL" --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p')

declare -a SEL=()
for i in "${!NAMES[@]}"; do
    if [ $# -gt 0 ]; then
        keep=0
        for want in "$@"; do [ "$want" = "${NAMES[$i]}" ] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    if grep -qx -- "${TARGETS[$i]}" <<<"$avail"; then
        SEL+=("$i")
    else
        log "skipping ${NAMES[$i]}: the source tree has no target ${TARGETS[$i]} yet"
    fi
done
[ ${#SEL[@]} -gt 0 ] || die "no image to build"

targets=()
for i in "${SEL[@]}"; do targets+=("${TARGETS[$i]}"); done
log "building ${targets[*]} (Release, -j$JOBS)"
cmake --build "$REL" -j "$JOBS" --target "${targets[@]}" >"$OUT/release.build.log" 2>&1 ||
    { tail -40 "$OUT/release.build.log" >&2; die "the Release build failed (log: $OUT/release.build.log)"; }

# --- 3. the images ---------------------------------------------------------------------------
CTX=$OUT/context
rm -rf "$CTX"
mkdir -p "$CTX/bin"
cp "$HERE/collect-runtime.sh" "$CTX/"
: >"$OUT/images.txt"
for i in "${SEL[@]}"; do
    name=${NAMES[$i]} target=${TARGETS[$i]} desc=${DESCS[$i]}
    bin=$(find "$REL" -path "$REL/CMakeFiles" -prune -o -type f -name "$target" -perm -u+x -print | head -1)
    [ -n "$bin" ] || die "the build produced no $target binary under $REL"
    strip --strip-unneeded -o "$CTX/bin/$target" "$bin"
    sed "s/@BIN@/$target/g" "$HERE/Containerfile.in" >"$CTX/Containerfile.$name"
    log "building image localhost/$name:$VERSION"
    podman build --quiet --pull=never --network=none --layers=false \
        --build-arg "BASE=$BASE_IMAGE" \
        --label "org.opencontainers.image.title=$name" \
        --label "org.opencontainers.image.description=$desc" \
        --label "org.opencontainers.image.version=$VERSION" \
        --label "org.opencontainers.image.revision=$REVISION" \
        --label "org.opencontainers.image.created=$CREATED" \
        --label "org.opencontainers.image.vendor=AzHexGate" \
        --label "org.opencontainers.image.base.name=debian:$SUITE (debootstrap, minbase)" \
        -f "$CTX/Containerfile.$name" -t "localhost/$name:$VERSION" -t "localhost/$name:latest" \
        "$CTX" >"$OUT/build-$name.log" 2>&1 ||
        { tail -30 "$OUT/build-$name.log" >&2; die "podman build of $name failed (log: $OUT/build-$name.log)"; }
    size=$(podman image inspect --format '{{.Size}}' "localhost/$name:$VERSION")
    printf '%s\t%s\t%s\n' "$name" "$VERSION" "$size" >>"$OUT/images.txt"
    log "built localhost/$name:$VERSION ($((size / 1024)) KiB)"
done
# Intermediate build-stage images are not kept.
podman image prune -f >/dev/null 2>&1 || true
log "done: $(wc -l <"$OUT/images.txt") image(s), list in $OUT/images.txt"
