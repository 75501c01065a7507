# shellcheck shell=bash
# Helpers shared by the deploy/local test scripts (kube-play.sh, sidecar-e2e.sh). Source it.

# free_port: prints a TCP port nobody listens on, outside the kernel's ephemeral range (the
# tests pick from 20000-29999) so that it cannot collide with ports the kernel hands out.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 10000))
        if ! ss -Hltn "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# http_code URL [CURL ARGS...]: the HTTP status of GET URL (000 when nothing answered); the body
# goes to $BODY when set.
http_code() {
    local url=$1
    shift
    curl -s -o "${BODY:-/dev/null}" -w '%{http_code}' --max-time 5 "$@" "$url" || true
}
