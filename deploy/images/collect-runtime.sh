#!/bin/sh
# Runs INSIDE the build stage of deploy/images/Containerfile.in (the debootstrapped Debian
# bookworm base), never on the host. Lays out in STAGE the whole runtime filesystem of one image:
#   - the binary and the closure of its shared libraries, as `ldd` resolves them in the base
#     (dereferenced copies, at their merged-/usr paths, plus the /lib and /lib64 links);
#   - the dpkg records and copyright files of the Debian packages those libraries come from
#     (/var/lib/dpkg/status.d/<pkg>, as distroless images do, so scanners can see them);
#   - CA certificates where OpenSSL and libcurl look by default, openssl.cnf, os-release;
#   - /etc/passwd and /etc/group with the non-root user azhexgate (uid/gid 10001), an
#     nsswitch.conf (files, then DNS), an empty /tmp (sticky) for runtimes that mount nothing.
# No shell, package manager or coreutils end up in STAGE.
#   collect-runtime.sh STAGE BINARY...
set -eu

[ $# -ge 2 ] || { echo "usage: collect-runtime.sh STAGE BINARY..." >&2; exit 64; }
STAGE=$1
shift
UID_APP=10001

mkdir -p "$STAGE/usr/lib/x86_64-linux-gnu" "$STAGE/usr/lib64" "$STAGE/usr/bin" \
    "$STAGE/etc/ssl/certs" "$STAGE/usr/lib/ssl" "$STAGE/var/lib/dpkg/status.d" \
    "$STAGE/usr/share/doc" "$STAGE/tmp"
chmod 1777 "$STAGE/tmp"
# merged /usr, as in the Debian base
ln -sfn usr/lib "$STAGE/lib"
ln -sfn usr/lib64 "$STAGE/lib64"
ln -sfn usr/bin "$STAGE/bin"

# copy_lib PATH: a dereferenced copy of PATH under STAGE, in the canonical directory
copy_lib() {
    dir=$(readlink -f "$(dirname "$1")")
    mkdir -p "$STAGE$dir"
    cp -L "$1" "$STAGE$dir/$(basename "$1")"
    echo "$1" >>"$STAGE.libs"
}

: >"$STAGE.libs"
for bin in "$@"; do
    [ -x "$STAGE$bin" ] || { echo "collect-runtime: $STAGE$bin is not an executable" >&2; exit 1; }
    # `ldd` prints "name => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)"; a
    # "not found" means the base lacks a package: fail with the library's name.
    out=$(ldd "$STAGE$bin")
    if echo "$out" | grep -q 'not found'; then
        echo "collect-runtime: $bin needs libraries the base image does not have:" >&2
        echo "$out" | grep 'not found' >&2
        exit 1
    fi
    for lib in $(echo "$out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        copy_lib "$lib"
    done
done

# Libraries loaded at run time, which ldd cannot see: libev and libwebsockets' libev plugin
# (the epoll event loop of common/src/net.c), with their own closure. Without them the binaries
# fall back to poll().
for lib in /usr/lib/x86_64-linux-gnu/libev.so.4 /usr/lib/x86_64-linux-gnu/libwebsockets-evlib_ev.so; do
    [ -e "$lib" ] || { echo "collect-runtime: $lib is missing in the base: the image would run poll()" >&2; exit 1; }
    copy_lib "$lib"
    for dep in $(ldd "$lib" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        copy_lib "$dep"
    done
done

# Debian package records of everything copied (dpkg -S wants the path dpkg installed, which
# may be the /lib or the /usr/lib spelling of it).
pkgs=$(sort -u "$STAGE.libs" | while read -r lib; do
    real=$(readlink -f "$lib")
    for p in "$lib" "$real" "/usr$lib" "/usr$real" "${real#/usr}"; do
        if s=$(dpkg -S "$p" 2>/dev/null); then echo "${s%%:*}"; break; fi
    done
done | sort -u)
pkgs="$pkgs ca-certificates"
for p in $pkgs base-files; do
    name=${p%%:*}
    dpkg-query -s "$p" >"$STAGE/var/lib/dpkg/status.d/$name"
    if [ -f "/usr/share/doc/$name/copyright" ]; then
        mkdir -p "$STAGE/usr/share/doc/$name"
        cp "/usr/share/doc/$name/copyright" "$STAGE/usr/share/doc/$name/"
    fi
done
rm -f "$STAGE.libs"

# TLS trust: libcurl reads /etc/ssl/certs/ca-certificates.crt, OpenSSL's default verify paths
# are /usr/lib/ssl/cert.pem and /usr/lib/ssl/certs.
cp /etc/ssl/certs/ca-certificates.crt "$STAGE/etc/ssl/certs/"
cp /etc/ssl/openssl.cnf "$STAGE/etc/ssl/"
ln -sfn /etc/ssl/certs "$STAGE/usr/lib/ssl/certs"
ln -sfn /etc/ssl/certs/ca-certificates.crt "$STAGE/usr/lib/ssl/cert.pem"
ln -sfn /etc/ssl/openssl.cnf "$STAGE/usr/lib/ssl/openssl.cnf"

cp /usr/lib/os-release "$STAGE/usr/lib/os-release"
ln -sfn ../usr/lib/os-release "$STAGE/etc/os-release"
cat >"$STAGE/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
azhexgate:x:$UID_APP:$UID_APP:azhexgate:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$STAGE/etc/group" <<EOF
root:x:0:
azhexgate:x:$UID_APP:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$STAGE/etc/nsswitch.conf"
echo "collect-runtime: $(echo "$pkgs" | wc -w) Debian packages, $(find "$STAGE" -type f | wc -l) files" >&2
