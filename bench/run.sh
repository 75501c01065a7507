#!/usr/bin/env bash
# Side-by-side benchmark of AzHexGate and its peers (issue 9; ../shared/docs/peers.md):
# direct, nginx (one proxy hop), ssh -R, PageKite, Microsoft's hyco-https listener through our
# emulator, AzHexGate (gateway + emulator + azhexgate client), and the relayed rows once more with
# the emulator's live-service latency profile — all on 127.0.0.1, in one run, against the same
# two origins:
#   - nginx answering a 1 KiB body from memory (req/s and latency: wrk --latency, 1/64/256 conns)
#   - bench/peers-origin, the client's demo app (1 GiB download/upload with curl, SSE first
#     event, WebSocket echo round trip with bench/peers_probe.js)
# and the peak RSS (VmHWM) of every process involved. Then three steps: "controller" (POST
# /api/tunnels with ARM at 2 s, cold vs warm pool, and the controller's memory per session:
# bench/ctl-bench), "tunnels" (10,000 registered tunnels: memory per tunnel in gateway and Redis,
# hot-tunnel latency with 1 vs 10,000: the real gateway with wrk and bench/gw-bench), "coldwarm"
# (live profile: a visitor's first request to a recently active tunnel vs a warm stream vs a
# cold tunnel). Writes bench/results/peers.json, peers.md and peers-latency.png.
#
#   bench/run.sh [--quick] [--dry-run] [--no-install] [--only PEER[,PEER...]]
#     --quick       a ~8-minute smoke: 2 s wrk runs, 256 MiB transfers, fewer samples, 1,000 tunnels
#     --dry-run     check the tools and the scripts, print the plan, start nothing
#     --no-install  do not apt-get/npm install what is missing (missing peers are reported)
#     --only        measure only these peers/steps (direct is always measured: ratios need
#                   it); steps: controller, tunnels (needs azhexgate), coldwarm (needs
#                   azhexgate-live)
# Environment: AHG_BENCH_BUILD_DIR (default build/bench), AHG_BENCH_PORT_BASE (default 18000),
# AHG_BENCH_KEEP=1 keeps the work directory (logs of every process), AHG_BENCH_LOG_LEVEL (default
# warn) is the log level of the emulators and gateways, AHG_BENCH_RESULTS (default bench/results)
# where the report goes.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AHG_BENCH_BUILD_DIR:-$ROOT/build/bench}
BASE=${AHG_BENCH_PORT_BASE:-18000}
LOGLEVEL=${AHG_BENCH_LOG_LEVEL:-warn}
RESULTS=${AHG_BENCH_RESULTS:-$ROOT/bench/results}
QUICK=0 DRY=0 INSTALL=1 ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done
PEERS=(direct nginx ssh pagekite hyco hyco-live azhexgate azhexgate-pool256 azhexgate-live)
# NT: registered tunnels (and controller sessions); NCW: samples of each coldwarm case;
# NCTL: POST /api/tunnels samples with a warm pool
if [ "$QUICK" = 1 ]; then
    DUR=2 XFER=$((256 * 1024 * 1024)) NSSE=5 NWS=200 NT=1000 NCW=20 NCTL=5
else
    DUR=5 XFER=$((1024 * 1024 * 1024)) NSSE=20 NWS=1000 NT=10000 NCW=20 NCTL=20
fi
# hyco-https (ws 6 underneath) rejects a WebSocket message over 100 MiB (ws maxPayload), and
# the protocol carries a request body as one message: its upload is measured with 96 MiB
HYCO_MAX_UP=$((96 * 1024 * 1024))
CONNS=(1 64 256)
XFER_TIMEOUT=40 # s per transfer: a slower peer gets its rate up to there ("stopped by the time limit")

# ports (127.0.0.1 only)
P_APP=$BASE P_STATIC=$((BASE + 1))
P_NGX_S=$((BASE + 10)) P_NGX_A=$((BASE + 11))
P_SSHD=$((BASE + 20)) P_SSH_S=$((BASE + 21)) P_SSH_A=$((BASE + 22))
P_PK=$((BASE + 30))
P_GW=$((BASE + 40)) P_REDIS=$((BASE + 41)) P_GW_POOL=$((BASE + 45)) P_GW_LIVE=$((BASE + 50))
P_GW_CW=$((BASE + 52))
DOMAIN=bench.localhost

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------ tools
TOOLS_APT=(nginx:nginx-light sshd:openssh-server ssh:openssh-client pagekite:pagekite wrk:wrk
    gnuplot:gnuplot-nox h2load:nghttp2-client curl:curl redis-server:redis-server node:nodejs)
need_install=()
for t in "${TOOLS_APT[@]}"; do
    cmd=${t%%:*} pkg=${t#*:}
    [ -x "/usr/sbin/$cmd" ] || command -v "$cmd" >/dev/null 2>&1 || need_install+=("$pkg")
done
if [ "$DRY" = 1 ]; then
    rc=0
    bash -n "$0" || rc=1
    if command -v node >/dev/null; then node --check bench/peers_probe.js || rc=1; fi
    PYTHONDONTWRITEBYTECODE=1 python3 bench/peers_report.py --self-test || rc=1
    echo "plan: peers ${PEERS[*]}; wrk ${DUR}s at ${CONNS[*]} connections; transfers $XFER B;" \
        "SSE x$NSSE; WS echo x$NWS; controller $NT sessions, $NCTL POSTs; $NT tunnels;" \
        "coldwarm x$NCW; build $BUILD; ports $BASE..$((BASE + 53))"
    [ ${#need_install[@]} -eq 0 ] || echo "would install: ${need_install[*]}"
    exit $rc
fi
if [ ${#need_install[@]} -gt 0 ] && [ "$INSTALL" = 1 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing ${need_install[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${need_install[@]}" >/dev/null || log "apt-get install failed; peers that need it will be reported"
    else
        log "not root: cannot install ${need_install[*]}; peers that need them will be reported"
    fi
fi
if [ "$INSTALL" = 1 ]; then
    "$ROOT/scripts/install-deps.sh" || log "scripts/install-deps.sh failed"
    [ -d tests/interop/node_modules/hyco-https ] && [ -d tests/interop/node_modules/ws ] ||
        "$ROOT/scripts/interop-deps.sh" || log "npm packages (hyco-https, ws) missing"
fi
for t in wrk curl node python3; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is required" >&2; exit 1; }
done

# ------------------------------------------------------------------ build (Release, no sanitizers)
log "building (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAHG_BUILD_TESTS=OFF >/dev/null || exit 1
targets=(azhexgate-emulator peers-origin)
# (the listing is read whole first: with pipefail, "cmake | grep -q" can fail on SIGPIPE)
known=$(cmake --build "$BUILD" --target help 2>/dev/null)
for t in azhexgate-gateway azhexgate azhexgate-controller ctl-bench gw-bench; do
    if grep -qx "\.\.\. $t" <<<"$known"; then targets+=("$t"); fi
done
cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" >"$BUILD/bench-build.log" 2>&1 ||
    { tail -30 "$BUILD/bench-build.log"; echo "run.sh: build failed" >&2; exit 1; }
EMU=$BUILD/emulator/azhexgate-emulator GW=$BUILD/gateway/azhexgate-gateway
CLI=$BUILD/client/azhexgate ORIGIN=$BUILD/bench/peers-origin
CTL=$BUILD/controller/azhexgate-controller CTL_BENCH=$BUILD/bench/ctl-bench GW_BENCH=$BUILD/bench/gw-bench

# ------------------------------------------------------------------ work dir, process bookkeeping
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d /tmp/ahg-bench-XXXXXX)
# The clients run from a copy under another name: on this shared machine something stops
# processes named exactly "azhexgate" (seen: every bench client exiting 0, i.e. on SIGINT/SIGTERM,
# while the gateway and the emulator lived on).
if [ -x "$CLI" ]; then cp "$CLI" "$WORK/ahg-bench-client" && CLI=$WORK/ahg-bench-client; fi
RAW=$WORK/raw
mkdir -p "$RAW"
ALL_PIDS=()
cleanup() {
    for ((i = ${#ALL_PIDS[@]} - 1; i >= 0; i--)); do kill "${ALL_PIDS[i]}" 2>/dev/null; done
    sleep 0.3
    for p in "${ALL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    # reap them here, quietly (else bash reports each one it finds killed on exit)
    [ ${#ALL_PIDS[@]} -eq 0 ] || wait "${ALL_PIDS[@]}" 2>/dev/null
    [ -f "$WORK/nginx-origin/nginx.pid" ] && kill "$(cat "$WORK/nginx-origin/nginx.pid")" 2>/dev/null
    [ -f "$WORK/nginx-hop/nginx.pid" ] && kill "$(cat "$WORK/nginx-hop/nginx.pid")" 2>/dev/null
    if [ "${AHG_BENCH_KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# peer_fail PEER REASON; peer_ok PEER; role PEER ROLE PID (a process whose VmHWM is reported)
peer_fail() { mkdir -p "$RAW/$1"; printf '%s\n' "$2" >"$RAW/$1/failed"; log "$1: not measured: $2"; }
role() { mkdir -p "$RAW/$1"; printf '%s %s\n' "$2" "$3" >>"$RAW/$1/pids"; }
spawn() { # spawn LOGNAME CMD... -> $! recorded
    "${@:2}" >"$WORK/$1.log" 2>&1 &
    ALL_PIDS+=($!)
}
wait_http() { # wait_http URL HOST SECONDS -> 0 when a 2xx came back
    local end=$((SECONDS + $3)) hdr=()
    [ "$2" = - ] || hdr=(-H "Host: $2")
    while [ $SECONDS -lt $end ]; do
        curl -sf -o /dev/null --max-time 2 "${hdr[@]}" "$1" && return 0
        sleep 0.2
    done
    return 1
}
wait_file() { local i; for ((i = 0; i < $2 * 10; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
logtail() { tail -c 400 "$WORK/$1.log" 2>/dev/null | tr '\n' ' ' | sed 's/  */ /g'; }
wanted() { [ -z "$ONLY" ] || [ "$1" = direct ] || [[ ",$ONLY," == *",$1,"* ]]; }

# per peer: static URL + Host, app base URL + Host ("-" = no Host header)
declare -A S_URL S_HOST A_URL A_HOST

# ------------------------------------------------------------------ origins
nginx_conf() { # nginx_conf DIR BODY_OF_HTTP_BLOCK
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi;
    uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
$2
}
EOF
}
body1k=$(head -c 1024 /dev/zero | tr '\0' 'x')
log "starting origins (nginx static :$P_STATIC, peers-origin :$P_APP)"
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    nginx_conf "$WORK/nginx-origin" "    server { listen 127.0.0.1:$P_STATIC; default_type text/plain;
        location / { return 200 '$body1k'; } }"
    spawn nginx-origin "$NGINX" -p "$WORK/nginx-origin" -c "$WORK/nginx-origin/nginx.conf"
    role origin nginx-static $!
else
    echo "run.sh: nginx is required for the static origin (apt-get install nginx-light)" >&2
    exit 1
fi
spawn origin "$ORIGIN" "$P_APP"
role origin peers-origin $!
wait_http "http://127.0.0.1:$P_STATIC/" - 10 || { echo "static origin did not start: $(logtail nginx-origin)" >&2; exit 1; }
wait_http "http://127.0.0.1:$P_APP/status/200" - 10 || { echo "peers-origin did not start: $(logtail origin)" >&2; exit 1; }
S_URL[direct]=http://127.0.0.1:$P_STATIC S_HOST[direct]=-
A_URL[direct]=http://127.0.0.1:$P_APP A_HOST[direct]=-

# ------------------------------------------------------------------ nginx, one proxy hop
start_nginx() {
    nginx_conf "$WORK/nginx-hop" "    map \$http_upgrade \$conn_upgrade { default upgrade; '' ''; }
    upstream us { server 127.0.0.1:$P_STATIC; keepalive 32; }
    upstream ua { server 127.0.0.1:$P_APP; keepalive 32; }
    proxy_http_version 1.1; proxy_buffering off; proxy_request_buffering off;
    client_max_body_size 0; proxy_read_timeout 600s; proxy_send_timeout 600s;
    server { listen 127.0.0.1:$P_NGX_S; location / { proxy_pass http://us;
        proxy_set_header Connection \"\"; } }
    server { listen 127.0.0.1:$P_NGX_A; location / { proxy_pass http://ua;
        proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$conn_upgrade; } }"
    spawn nginx-hop "$NGINX" -p "$WORK/nginx-hop" -c "$WORK/nginx-hop/nginx.conf"
    role nginx nginx $!
    wait_http "http://127.0.0.1:$P_NGX_S/" - 10 || { peer_fail nginx "did not answer: $(logtail nginx-hop)"; return; }
    S_URL[nginx]=http://127.0.0.1:$P_NGX_S S_HOST[nginx]=-
    A_URL[nginx]=http://127.0.0.1:$P_NGX_A A_HOST[nginx]=-
}

# ------------------------------------------------------------------ ssh -R
start_ssh() {
    local sshd d=$WORK/ssh
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    [ -x "$sshd" ] && command -v ssh >/dev/null || { peer_fail ssh "openssh-server/openssh-client not installed"; return; }
    [ "$(id -u)" -eq 0 ] || { peer_fail ssh "sshd needs root here (run as root)"; return; }
    mkdir -p "$d" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$d/host" && ssh-keygen -q -t ed25519 -N '' -f "$d/user" ||
        { peer_fail ssh "ssh-keygen failed"; return; }
    cp "$d/user.pub" "$d/authorized_keys"
    cat >"$d/sshd_config" <<EOF
Port $P_SSHD
ListenAddress 127.0.0.1
HostKey $d/host
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding remote
UsePAM no
StrictModes no
PidFile $d/sshd.pid
EOF
    spawn sshd "$sshd" -D -e -f "$d/sshd_config"
    role ssh sshd $!
    sleep 0.5
    spawn ssh ssh -N -o ExitOnForwardFailure=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o BatchMode=yes -i "$d/user" -p "$P_SSHD" \
        -R "127.0.0.1:$P_SSH_S:127.0.0.1:$P_STATIC" -R "127.0.0.1:$P_SSH_A:127.0.0.1:$P_APP" \
        "$(id -un)@127.0.0.1"
    role ssh ssh-client $!
    wait_http "http://127.0.0.1:$P_SSH_S/" - 15 || { peer_fail ssh "forward did not answer: $(logtail ssh) $(logtail sshd)"; return; }
    S_URL[ssh]=http://127.0.0.1:$P_SSH_S S_HOST[ssh]=-
    A_URL[ssh]=http://127.0.0.1:$P_SSH_A A_HOST[ssh]=-
}

# ------------------------------------------------------------------ PageKite
start_pagekite() {
    command -v pagekite >/dev/null || { peer_fail pagekite "pagekite not installed"; return; }
    local secret
    secret=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    spawn pagekite-front pagekite --clean --isfrontend --host=127.0.0.1 --ports="$P_PK" \
        --protos=http --domain="http:*.localhost:$secret" --nullui
    role pagekite relay $!
    sleep 1
    spawn pagekite-back pagekite --clean --frontend="127.0.0.1:$P_PK" \
        --service_on="http:static.localhost:127.0.0.1:$P_STATIC:$secret" \
        --service_on="http:app.localhost:127.0.0.1:$P_APP:$secret" --nullui
    role pagekite backend $!
    wait_http "http://127.0.0.1:$P_PK/" static.localhost 30 || { peer_fail pagekite "no answer through the relay in 30 s: $(logtail pagekite-back)"; return; }
    S_URL[pagekite]=http://127.0.0.1:$P_PK S_HOST[pagekite]=static.localhost
    A_URL[pagekite]=http://127.0.0.1:$P_PK A_HOST[pagekite]=app.localhost
}

# ------------------------------------------------------------------ emulator helper
# start_emu NAME EXTRA_ARGS... ; sets EMU_PORT EMU_NS EMU_KEY (root key) on success
start_emu() {
    local name=$1 d=$WORK/$1
    shift
    mkdir -p "$d"
    head -c 32 /dev/urandom | base64 >"$d/key"
    spawn "$name" "$EMU" --emulator-bind 127.0.0.1 --emulator-relay-port 0 --emulator-mgmt-port 0 \
        --emulator-identity-port 0 --emulator-admin-port 0 --emulator-root-key-file "$d/key" \
        --emulator-ready-file "$d/ready" --log-level "$LOGLEVEL" "$@"
    EMU_PID=$!
    wait_file "$d/ready" 15 || return 1
    EMU_PORT=$(sed -n 's/^relay_port=//p' "$d/ready")
    EMU_NS=$(sed -n 's/^namespace_host=//p' "$d/ready")
    EMU_KEY=$(cat "$d/key")
}

# ------------------------------------------------------------------ hyco-https through the emulator
start_hyco() { # start_hyco PEER EXTRA_EMULATOR_ARGS...
    local peer=$1 hs=${1//-/}s ha=${1//-/}a
    shift
    [ -d tests/interop/node_modules/hyco-https ] || { peer_fail "$peer" "npm hyco-https missing (scripts/interop-deps.sh)"; return; }
    start_emu "emu-$peer" --emulator-hybrid-connections "$hs:noauth" \
        --emulator-hybrid-connections "$ha:noauth" "$@" || { peer_fail "$peer" "emulator did not start: $(logtail "emu-$peer")"; return; }
    role "$peer" emulator "$EMU_PID"
    spawn "$peer" node bench/peers_probe.js hyco "ws://127.0.0.1:$EMU_PORT" "$EMU_NS" "$EMU_KEY" \
        "$hs=$P_STATIC" "$ha=$P_APP"
    role "$peer" hyco-https-listener $!
    wait_http "http://127.0.0.1:$EMU_PORT/$hs/" - 30 || { peer_fail "$peer" "no answer through the relay: $(logtail "$peer")"; return; }
    S_URL[$peer]=http://127.0.0.1:$EMU_PORT/$hs S_HOST[$peer]=-
    A_URL[$peer]=http://127.0.0.1:$EMU_PORT/$ha A_HOST[$peer]=-
}

# ------------------------------------------------------------------ AzHexGate
REDIS_UP=0
# GW_EXTRA: extra gateway flags (an array) for the next start_azhexgate
GW_EXTRA=()
spawn_gw() { # spawn_gw LOGNAME PEER PORT EXTRA_GATEWAY_ARGS...: a gateway on PEER's emulator
    local d=$WORK/$2                # (GW_ADMIN: its admin port, default none)
    spawn "$1" "$GW" --domain "$DOMAIN" --listen-address 127.0.0.1 --listen-port "$3" \
        --admin-port "${GW_ADMIN:--1}" --store-url "redis://127.0.0.1:$P_REDIS" \
        --relay-endpoint "ws://127.0.0.1:$(cat "$d/emu_port")" --relay-sas-key-name RootManageSharedAccessKey \
        --relay-sas-key-file "$d/sendkey" --access-log=false --log-level "$LOGLEVEL" "${@:4}"
}
start_azhexgate() { # start_azhexgate PEER GW_PORT EXTRA_EMULATOR_ARGS...
    local peer=$1 gwport=$2 missing=() d=$WORK/$1
    shift 2
    [ -x "$GW" ] || missing+=("azhexgate-gateway (gateway/)")
    [ -x "$CLI" ] || missing+=("azhexgate (client/)")
    [ ${#missing[@]} -eq 0 ] || { peer_fail "$peer" "not built: ${missing[*]}"; return; }
    if [ "$REDIS_UP" = 0 ]; then
        spawn redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no
        REDIS_PID=$!
        for _ in $(seq 50); do redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
        redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 || { peer_fail "$peer" "redis-server did not start: $(logtail redis)"; return; }
        REDIS_UP=1
    fi
    role "$peer" redis "$REDIS_PID"
    local ids=("${peer//-/}s" "${peer//-/}a") ports=("$P_STATIC" "$P_APP")
    start_emu "emu-$peer" --emulator-hybrid-connections "${ids[0]}" \
        --emulator-hybrid-connections "${ids[1]}" "$@" || { peer_fail "$peer" "emulator did not start: $(logtail "emu-$peer")"; return; }
    role "$peer" emulator "$EMU_PID"
    [ "$peer" = azhexgate ] && EMU_NS_AZ=$EMU_NS
    mkdir -p "$d"
    printf '%s\n' "$EMU_KEY" >"$d/sendkey"
    echo "$EMU_PORT" >"$d/emu_port"
    local exp=$(($(date +%s) + 86400)) i
    for i in 0 1; do
        redis-cli -p "$P_REDIS" SET "ahg:route:${ids[i]}" \
            "{\"v\":1,\"id\":\"${ids[i]}\",\"session_id\":\"$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')\",\"hc\":\"${ids[i]}\",\"relay\":\"$EMU_NS\",\"expires_at\":$exp}" \
            EX 86400 >/dev/null
    done
    spawn_gw "gw-$peer" "$peer" "$gwport" "${GW_EXTRA[@]}"
    role "$peer" gateway $!
    for i in 0 1; do
        local tok
        tok=$(node bench/peers_probe.js token "$EMU_NS" "${ids[i]}" RootManageSharedAccessKey "$EMU_KEY") ||
            { peer_fail "$peer" "cannot make a listener token"; return; }
        spawn "cli-$peer-$i" "$CLI" start --port "${ports[i]}" --relay-endpoint "ws://127.0.0.1:$EMU_PORT" \
            --hybrid-connection "${ids[i]}" --listener-token "$tok" --quiet
        role "$peer" "client-${ids[i]: -1}" $!
    done
    local t0
    t0=$(date +%s%N)
    wait_http "http://127.0.0.1:$gwport/" "${ids[0]}.$DOMAIN" 30 ||
        { peer_fail "$peer" "no answer through the gateway in 30 s: gateway: $(logtail "gw-$peer") client: $(logtail "cli-$peer-0")"; return; }
    echo $((($(date +%s%N) - t0) / 1000)) >"$RAW/$peer/first_request_us"
    S_URL[$peer]=http://127.0.0.1:$gwport S_HOST[$peer]=${ids[0]}.$DOMAIN
    A_URL[$peer]=http://127.0.0.1:$gwport A_HOST[$peer]=${ids[1]}.$DOMAIN
}

wanted nginx && start_nginx
wanted ssh && start_ssh
wanted pagekite && start_pagekite
wanted hyco && start_hyco hyco
wanted hyco-live && start_hyco hyco-live --emulator-latency-profile live
wanted azhexgate && start_azhexgate azhexgate "$P_GW"
GW_EXTRA=(--pool-max-idle 256)
wanted azhexgate-pool256 && start_azhexgate azhexgate-pool256 "$P_GW_POOL"
GW_EXTRA=()
wanted azhexgate-live && start_azhexgate azhexgate-live "$P_GW_LIVE" --emulator-latency-profile live

# ------------------------------------------------------------------ measure
alive_check() { # alive_check PEER STEP: notes every process of PEER that died during STEP
    local r p st
    while read -r r p; do
        if ! kill -0 "$p" 2>/dev/null && ! grep -q "^$r " "$RAW/$1/died" 2>/dev/null; then
            wait "$p" 2>/dev/null
            st=$?
            [ $st -gt 128 ] && st="signal $((st - 128))" || st="exit status $st"
            printf '%s %s (%s)\n' "$r" "$2" "$st" >>"$RAW/$1/died"
            log "$1: $r (pid $p) died during $2 ($st)"
        fi
    done <"$RAW/$1/pids"
}
run_wrk() { # run_wrk PEER CONNS
    local peer=$1 c=$2 hdr=()
    [ "${S_HOST[$peer]}" = - ] || hdr=(-H "Host: ${S_HOST[$peer]}")
    log "$peer: wrk ${DUR}s, $c connections"
    timeout $((DUR + 30)) wrk -t1 -c"$c" -d"${DUR}s" --timeout 10s --latency "${hdr[@]}" \
        "${S_URL[$peer]}/" >"$RAW/$peer/wrk-$c.txt" 2>&1
    alive_check "$peer" "wrk -c$c"
}
# limitation PEER FIGURE TEXT: FIGURE cannot be measured as for the other rows (the report says why)
limitation() { printf '%s %s\n' "$2" "$3" >>"$RAW/$1/limits"; }
measure() {
    local peer=$1 out=$RAW/$1 au ah hdr=() up=$XFER nsse=$NSSE sse_to=15
    au=${A_URL[$peer]} ah=${A_HOST[$peer]}
    mkdir -p "$out"
    touch "$out/pids"
    if [[ $peer == hyco* ]]; then
        # Limitations of hyco-https / the relay's HTTP mode, not of the emulator (docs/benchmarks.md)
        [ "$up" -le "$HYCO_MAX_UP" ] || { up=$HYCO_MAX_UP; limitation "$peer" upload \
            "hyco-https takes a request body as one WebSocket message and its ws 6 rejects messages over 100 MiB (maxPayload): measured with 96 MiB"; }
        nsse=1 sse_to=60
        limitation "$peer" sse "hyco-https buffers a streamed response until 64 KiB are pending or it ends (no flush timer; .NET flushes after 2 s): the first event arrives with the 64th KiB (1 sample)"
        limitation "$peer" ws "not possible: the relay's HTTP mode relays no protocol upgrades (it strips Upgrade/Connection); WebSockets need the hyco-ws listener"
    fi
    echo "$up" >"$out/upload_bytes"
    # 256 connections last: a peer that falls over under it (PageKite) still gets the rest measured
    run_wrk "$peer" 1
    run_wrk "$peer" 64
    [ "$ah" = - ] || hdr=(-H "Host: $ah")
    log "$peer: download $XFER B"
    curl -s -o /dev/null --max-time "$XFER_TIMEOUT" "${hdr[@]}" \
        -w '{"code":"%{http_code}","bytes":%{size_download},"Bps":%{speed_download},"s":%{time_total}}' \
        "$au/bytes/$XFER" >"$out/download.json" 2>"$out/download.err"
    echo "curl exit $?" >>"$out/download.err"
    alive_check "$peer" download
    log "$peer: upload $up B (to /sink: counted, not echoed)"
    head -c "$up" /dev/zero | curl -s -o /dev/null --max-time "$XFER_TIMEOUT" "${hdr[@]}" \
        -X POST -T - -H 'Content-Type: application/octet-stream' \
        -w '{"code":"%{http_code}","bytes":%{size_upload},"Bps":%{speed_upload},"s":%{time_total}}' \
        "$au/sink" >"$out/upload.json" 2>"$out/upload.err"
    echo "curl exit $?" >>"$out/upload.err"
    alive_check "$peer" upload
    log "$peer: SSE x$nsse, WebSocket echo x$NWS"
    timeout 120 node bench/peers_probe.js sse "$au/events?every=10" "$ah" "$nsse" "$sse_to" \
        >"$out/sse.json" 2>"$out/sse.err"
    alive_check "$peer" SSE
    if ! grep -q '^ws ' "$out/limits" 2>/dev/null; then
        timeout 120 node bench/peers_probe.js ws "${au/http:/ws:}/ws" "$ah" "$NWS" \
            >"$out/ws.json" 2>"$out/ws.err"
        alive_check "$peer" WebSocket
    fi
    run_wrk "$peer" 256
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for peer in "${PEERS[@]}"; do
    wanted "$peer" || continue
    [ -f "$RAW/$peer/failed" ] && continue
    [ -n "${S_URL[$peer]:-}" ] || { peer_fail "$peer" "not started"; continue; }
    measure "$peer"
done

# ------------------------------------------------------------------ steps after the table
step_wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
hwm() { awk '/^VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_hwm() { # sum of VmHWM over a process and its descendants
    local p sum kids
    sum=$(hwm "$1")
    sum=${sum:-0}
    kids=$(pgrep -P "$1" 2>/dev/null)
    for p in $kids; do sum=$((sum + $(tree_hwm "$p"))); done
    echo "$sum"
}
write_rss() { # write_rss PIDS_FILE OUT: "role pid peak-kB|died" for every process of a row
    local r p h
    while read -r r p; do
        if kill -0 "$p" 2>/dev/null; then h=$(tree_hwm "$p"); else h=died; fi
        printf '%s %s %s\n' "$r" "$p" "$h"
    done <"$1" >"$2"
}
rss_of() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pid_of() { awk -v r="$2" '$1 == r {print $2}' "$RAW/$1/pids"; }

# controller: bench/ctl-bench (the emulator inside it, ARM calls delayed 2 s; redis-server and
# azhexgate-controller as its children on free ports): POST /api/tunnels with a warm pool vs
# none, then NT live sessions (records in Redis, HCs in ARM) and the controller's RSS before and
# after its reconcile passes. The azhexgate rows above do not go through the controller: their
# routes are written into Redis as the controller would (docs/state.md).
controller_step() {
    local out=$RAW/controller rc
    mkdir -p "$out"
    [ -x "$CTL" ] && [ -x "$CTL_BENCH" ] || { echo "not built: azhexgate-controller / ctl-bench" >"$out/failed"; return; }
    log "controller: POST /api/tunnels x$NCTL (ARM 2 s, warm pool vs none), $NT sessions"
    timeout 600 "$CTL_BENCH" "$CTL" "$out" "$NT" "$NCTL" >"$out/log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || echo "ctl-bench failed (exit $rc): $(tail -c 300 "$out/log" | tr '\n' ' ')" >"$out/failed"
}

# tunnels: NT routes (tNNNNN.DOMAIN) written into Redis, their Hybrid Connection absent (a visit =
# Redis lookup, the route cached, the relay's 404 for a stream, 502; no stream stays open):
# Redis memory per route; one curl --parallel pass (8 connections) over every host; the gateway's
# RSS growth per tunnel; the azhexgate row's hot tunnel (wrk -c1) right before the routes and
# right after the pass; then bench/gw-bench lookup (the same comparison in one process, 2,000
# sequential connections, 10,000 tunnels).
tunnels_many() {
    local out=$RAW/tunnels i exp gw m0 m1 t0 rc hdr
    mkdir -p "$out"
    echo "$NT" >"$out/count"
    if [ -z "${S_URL[azhexgate]:-}" ] || [ -f "$RAW/azhexgate/died" ]; then
        echo "the azhexgate row is not up" >"$out/failed"
        return
    fi
    gw=$(pid_of azhexgate gateway)
    # the row's own peaks, before 10,000 tunnels add to the gateway's
    write_rss "$RAW/azhexgate/pids" "$RAW/azhexgate/rss-row"
    hdr=(-H "Host: ${S_HOST[azhexgate]}")
    log "tunnels: hot tunnel (wrk -c1 ${DUR}s) with 2 tunnels registered"
    timeout $((DUR + 30)) wrk -t1 -c1 -d"${DUR}s" --timeout 10s --latency "${hdr[@]}" \
        "${S_URL[azhexgate]}/" >"$out/hot-before.txt" 2>&1
    log "tunnels: $NT routes into Redis"
    m0=$(redis-cli -p "$P_REDIS" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    exp=$(($(date +%s) + 86400))
    for ((i = 0; i < NT; i++)); do
        printf "SET ahg:route:t%05d '{\"v\":1,\"id\":\"t%05d\",\"session_id\":\"%032x\",\"hc\":\"ahg-t%05d\",\"relay\":\"%s\",\"expires_at\":%s}' EX 86400\n" \
            "$i" "$i" "$i" "$i" "$EMU_NS_AZ" "$exp"
    done | redis-cli -p "$P_REDIS" >"$out/redis-set.txt" 2>&1
    m1=$(redis-cli -p "$P_REDIS" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    printf '{"redis_used_memory_before":%s,"redis_used_memory_after":%s,"routes_set":%s}\n' "$m0" "$m1" \
        "$(grep -c '^OK' "$out/redis-set.txt")" >"$out/redis.json"
    # curl resolves *.localhost to 127.0.0.1 itself; --parallel reuses up to 8 connections
    for ((i = 0; i < NT; i++)); do
        printf 'url = "http://t%05d.%s:%s/"\noutput = "/dev/null"\n' "$i" "$DOMAIN" "$P_GW"
    done >"$out/urls.cfg"
    printf 'before %s\n' "$(rss_of "$gw")" >"$out/rss"
    log "tunnels: one visit to each of the $NT tunnels"
    t0=$(date +%s%N)
    timeout 300 curl -s -Z --parallel-max 8 --max-time 30 -K "$out/urls.cfg" \
        -w '%{http_code} %{time_total}\n' >"$out/pass1.txt" 2>/dev/null
    echo $((($(date +%s%N) - t0) / 1000)) >"$out/pass1.wall_us"
    printf 'pass1 %s\n' "$(rss_of "$gw")" >>"$out/rss"
    log "tunnels: hot tunnel again with $NT more registered and cached"
    timeout $((DUR + 30)) wrk -t1 -c1 -d"${DUR}s" --timeout 10s --latency "${hdr[@]}" \
        "${S_URL[azhexgate]}/" >"$out/hot-after.txt" 2>&1
    alive_check azhexgate "the $NT-tunnel step"
    if [ -x "$GW_BENCH" ]; then
        log "tunnels: bench/gw-bench lookup"
        timeout 300 "$GW_BENCH" "$out" lookup >"$out/gw-bench.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || echo "gw-bench lookup failed (exit $rc): $(tail -c 200 "$out/gw-bench.log")" >"$out/gw-bench.err"
    fi
}

# coldwarm (issue 5): a gateway of its own on the azhexgate-live row's emulator (live latency
# profile), its pool idle timeout and pre-dial window scaled from 60 s to 1 s so that "idle for
# longer than the pool idle timeout" takes seconds. NCW rounds on the static tunnel
# (peers_probe.js coldwarm), each: 3 s idle, then cold = a new visitor connection (the pool is
# empty: a rendezvous); 0.3 s later recent = a new visitor connection to a tunnel that just
# served traffic (pre-dialed pool); 0.3 s later warm = a request on a kept-alive visitor
# connection; 0.3 s later warm_new = a new visitor connection to the hot tunnel (the like-for-like
# comparator of recent); then the same new-connection / kept-alive pair straight to the static origin, the
# baseline (what a new TCP connection costs without any tunnel). Every request follows a pause
# of at least 0.3 s, so none of them finds the processes hotter than another. Pool hit/miss
# counters of that gateway are read at the end (NCW misses expected: one per cold request).
coldwarm() {
    local out=$RAW/coldwarm url host
    mkdir -p "$out"
    if [ -z "${S_URL[azhexgate-live]:-}" ] || [ -f "$RAW/azhexgate-live/died" ]; then
        echo "the azhexgate-live row is not up" >"$out/failed"
        return
    fi
    GW_ADMIN=$((BASE + 53)) spawn_gw gw-coldwarm azhexgate-live "$P_GW_CW" --pool-idle-timeout 1s \
        --pool-prewarm-window 1s
    role coldwarm gateway $!
    host=${S_HOST[azhexgate-live]} url=http://127.0.0.1:$P_GW_CW/
    wait_http "$url" "$host" 30 || { echo "its gateway did not answer: $(logtail gw-coldwarm)" >"$out/failed"; return; }
    log "coldwarm: $NCW rounds of cold / recently active / warm (~$((NCW * 5)) s)"
    timeout 600 node bench/peers_probe.js coldwarm "$url" "$host" "$NCW" 3000 \
        "${S_URL[direct]}/" >"$out/coldwarm.json" 2>"$out/coldwarm.err"
    curl -s --max-time 5 "http://127.0.0.1:$((BASE + 53))/metrics" |
        grep -E '^azhexgate_gateway_(pool_total|prewarm_dials_total)' >"$out/metrics.txt"
    alive_check coldwarm "the cold/warm probe"
}
if step_wanted controller; then controller_step; fi
if step_wanted tunnels; then tunnels_many; fi
if step_wanted coldwarm; then coldwarm; fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ peak RSS of every process (tree)
for f in "$RAW"/*/pids; do
    [ -f "$f" ] || continue
    write_rss "$f" "${f%pids}rss"
done
# the last error lines of each peer's processes (the report shows them next to failed figures)
peer_logs() {
    case $1 in
    nginx) echo "$WORK/nginx-hop/error.log" ;;
    ssh) echo "$WORK/sshd.log $WORK/ssh.log" ;;
    pagekite) echo "$WORK/pagekite-front.log $WORK/pagekite-back.log" ;;
    hyco*) echo "$WORK/$1.log $WORK/emu-$1.log" ;;
    azhexgate*) echo "$WORK/emu-$1.log $WORK/gw-$1.log $WORK/cli-$1-0.log $WORK/cli-$1-1.log" ;;
    esac
}
for peer in "${PEERS[@]}"; do
    [ -d "$RAW/$peer" ] || continue
    # shellcheck disable=SC2046 # a list of paths without spaces
    grep -ahiE 'error|exception|fatal|panic' $(peer_logs "$peer") 2>/dev/null | grep -v 'redis' |
        tail -n 2 | cut -c1-300 | tr -cd '[:print:]\n' >"$RAW/$peer/log-errors"
done

# ------------------------------------------------------------------ machine, report
cat >"$RAW/machine.json" <<EOF
{"date":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","cpu":"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')",
 "cores":$(nproc),"mem_kb":$(awk '/MemTotal/{print $2}' /proc/meminfo),"kernel":"$(uname -r)",
 "load_before":"$LOAD_BEFORE","load_after":"$LOAD_AFTER","quick":$QUICK,"wrk_seconds":$DUR,
 "transfer_bytes":$XFER,"sse_samples":$NSSE,"ws_samples":$NWS,
 "versions":{"nginx":"$($NGINX -v 2>&1 | sed 's/.*nginx\///')","openssh":"$(ssh -V 2>&1 | cut -d, -f1)",
 "pagekite":"$(pagekite --version 2>/dev/null | head -1 | tr -d '"')","wrk":"$(wrk -v 2>&1 | head -1 | cut -d' ' -f2)",
 "node":"$(node -v)","hyco-https":"$(node -p "require('./tests/interop/node_modules/hyco-https/package.json').version" 2>/dev/null)"}}
EOF
mkdir -p "$RESULTS"
python3 bench/peers_report.py "$RAW" "$RESULTS" "${PEERS[@]}" || exit 1
if [ -f "$RESULTS/peers-latency.dat" ]; then
    if command -v gnuplot >/dev/null; then
        gnuplot "$RESULTS/peers-latency.gp" || log "gnuplot failed: peers-latency.png not updated"
    else
        log "gnuplot not installed (gnuplot-nox): peers-latency.png not updated"
    fi
    rm -f "$RESULTS/peers-latency.gp" "$RESULTS/peers-latency.dat"
fi
cat "$RESULTS/peers.md"
