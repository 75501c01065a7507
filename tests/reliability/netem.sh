#!/usr/bin/env bash
# Delay, loss and a blackout between the client and the relay, in two private network namespaces
# joined by a veth pair (10.213.0.1 relay side, 10.213.0.2 client side; no other address is
# touched). The client (direct relay mode, listener token) must keep its control channel through
# 200 ms delay and 5% loss, and reconnect after a 10 s blackout.
# Delay needs tc netem (kernel sch_netem); without it the client reaches the relay through
# delay_proxy.py in its namespace (every byte held 200 ms each way while the delay is on: the
# latency of netem's delay, without its jitter or reordering), and loss and blackout use
# iptables' statistic match / DROP inside the client namespace.
# Usage: netem.sh EMULATOR_BIN AZHEXGATE_BIN. Exit 77 = skipped (not root, no netns, neither
# netem nor iptables).
# AHG_LONG_TESTS=1 holds the impairment longer (60 s instead of 15 s).
set -uo pipefail
EMU=${1:?emulator binary}
CLI=${2:?azhexgate binary}
KEY="XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q="
NS_R=ahg-rel-relay-$$
NS_C=ahg-rel-client-$$
HOLD=15
[ "${AHG_LONG_TESTS:-}" = 1 ] && HOLD=60
skip() { echo "rel_netem: SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root for ip netns"
command -v ip >/dev/null || skip "iproute2 missing (scripts/install-deps.sh)"
command -v tc >/dev/null || skip "tc missing (iproute2)"
command -v curl >/dev/null || skip "curl missing"
command -v python3 >/dev/null || skip "python3 missing (token signing)"
DIR=$(mktemp -d /tmp/ahg-rel-netem-XXXXXX)
EPID=""
CPID=""
cleanup() {
    [ -n "$CPID" ] && kill -INT "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null
    [ -n "$EPID" ] && kill -TERM "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
    [ -n "${PPID_:-}" ] && kill -TERM "$PPID_" 2>/dev/null && wait "$PPID_" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    ip netns del "$NS_R" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS_R" 2>/dev/null || skip "ip netns add failed (no netns support here)"
ip netns add "$NS_C" || skip "ip netns add failed"
ip link add "vr$$" netns "$NS_R" type veth peer name "vc$$" netns "$NS_C" ||
    skip "veth pairs unavailable"
ip -n "$NS_R" addr add 10.213.0.1/24 dev "vr$$"
ip -n "$NS_C" addr add 10.213.0.2/24 dev "vc$$"
for ns in "$NS_R" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_R" link set "vr$$" up
ip -n "$NS_C" link set "vc$$" up
NETEM=1
ip netns exec "$NS_C" tc qdisc add dev "vc$$" root netem delay 0ms 2>/dev/null || NETEM=0
if [ $NETEM = 0 ]; then
    command -v iptables >/dev/null || skip "neither tc netem (sch_netem) nor iptables available"
    ip netns exec "$NS_C" iptables -L -n >/dev/null 2>&1 || skip "no netem and iptables fails"
    echo "rel_netem: note: tc netem unavailable (kernel sch_netem); delay through" \
        "delay_proxy.py, loss and blackout through iptables in the client namespace"
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PPID_=
# impair LOSS_PERCENT DELAY_MS (both directions, on the client's side of the link); 0 0 = clear
impair() {
    if [ $NETEM = 1 ]; then
        ip netns exec "$NS_C" tc qdisc change dev "vc$$" root netem delay "$2ms" loss "$1%"
        ip netns exec "$NS_R" tc qdisc del dev "vr$$" root 2>/dev/null
        [ "$1$2" = 00 ] ||
            ip netns exec "$NS_R" tc qdisc add dev "vr$$" root netem delay "$2ms" loss "$1%"
        return
    fi
    ip netns exec "$NS_C" iptables -F INPUT
    ip netns exec "$NS_C" iptables -F OUTPUT
    if [ "$2" = 0 ]; then kill -USR2 "$PPID_"; else kill -USR1 "$PPID_"; fi
    [ "$1" = 0 ] && return
    local m=(-j DROP)
    [ "$1" = 100 ] || m=(-m statistic --mode random --probability "0.0$1" -j DROP)
    ip netns exec "$NS_C" iptables -A INPUT -i "vc$$" "${m[@]}"
    ip netns exec "$NS_C" iptables -A OUTPUT -o "vc$$" "${m[@]}"
}

fail() { echo "rel_netem: FAIL: $*"; echo "--- emulator"; tail -20 "$DIR/emu.log"; echo "--- client"; tail -20 "$DIR/cli.log"; exit 1; }
wait_metric() { # name value seconds
    local end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        [ "$(metric "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

ip netns exec "$NS_R" "$EMU" --emulator-bind=10.213.0.1 --emulator-namespace=ahg-it \
    --emulator-relay-port=9911 --emulator-mgmt-port=0 --emulator-identity-port=0 \
    --emulator-admin-port=0 --emulator-hybrid-connections=hc1 --emulator-root-key="$KEY" \
    --emulator-ready-file="$DIR/ready" >"$DIR/emu.log" 2>&1 &
EPID=$!
for _ in $(seq 100); do [ -f "$DIR/ready" ] && break; sleep 0.1; done
[ -f "$DIR/ready" ] || fail "the emulator did not start"
ADMIN=$(sed -n 's/^admin_port=//p' "$DIR/ready")
# name -> value from the emulator's /metrics (admin binds 10.213.0.1 too, emulator.bind)
metric() {
    ip netns exec "$NS_R" curl -s --max-time 5 "http://10.213.0.1:$ADMIN/metrics" |
        awk -v n="$1" '$1 == n { print $2 }'
}
TOKEN=$(python3 - "$KEY" <<'PY'
import base64, hashlib, hmac, sys, time, urllib.parse
uri = urllib.parse.quote("http://ahg-it.servicebus.windows.net/hc1", safe="")
se = str(int(time.time()) + 3600)
sig = base64.b64encode(hmac.new(sys.argv[1].encode(), (uri + "\n" + se).encode(),
                                hashlib.sha256).digest()).decode()
print("SharedAccessSignature sr=%s&sig=%s&se=%s&skn=RootManageSharedAccessKey"
      % (uri, urllib.parse.quote(sig, safe=""), se))
PY
)
ip netns exec "$NS_C" python3 -m http.server 8080 --bind 127.0.0.1 >"$DIR/app.log" 2>&1 &
APP=$!
RELAY=ws://10.213.0.1:9911
if [ $NETEM = 0 ]; then
    ip netns exec "$NS_C" python3 "$HERE/delay_proxy.py" 127.0.0.1 9921 10.213.0.1 9911 200 \
        >"$DIR/proxy.log" 2>&1 &
    PPID_=$!
    for _ in $(seq 100); do grep -q ready "$DIR/proxy.log" && break; sleep 0.1; done
    grep -q ready "$DIR/proxy.log" || fail "delay_proxy.py did not start: $(cat "$DIR/proxy.log")"
    RELAY=ws://127.0.0.1:9921
fi
ip netns exec "$NS_C" "$CLI" start --port=8080 --relay-endpoint="$RELAY" \
    --hybrid-connection=hc1 --listener-token="$TOKEN" --keepalive=2s >"$DIR/cli.log" 2>&1 &
CPID=$!
wait_metric ahg_emulator_listeners 1 20 || { kill $APP; fail "the client never connected"; }
total0=$(metric ahg_emulator_listen_total)
echo "rel_netem: connected (listen_total=$total0)"
# one request through the tunnel from the relay side (HTTP mode, a sender with the same token):
# "STATUS SECONDS"; the delay shows in its time (at least two crossings each way)
through() {
    ip netns exec "$NS_R" curl -s -o /dev/null --max-time 20 -w '%{http_code} %{time_total}' \
        -H "ServiceBusAuthorization: $TOKEN" "http://10.213.0.1:9911/hc1/"
}
base=$(through)
[ "${base%% *}" = 200 ] || { kill $APP; fail "a request through the tunnel answered '$base'"; }

impair 0 200
sleep 1
slow=$(through)
[ "${slow%% *}" = 200 ] || { kill $APP; fail "under 200 ms delay a request answered '$slow'"; }
echo "rel_netem: a request through the tunnel took ${base#* } s, ${slow#* } s with 200 ms delay each way"
awk -v s="${slow#* }" 'BEGIN { exit !(s >= 0.4) }' ||
    { kill $APP; fail "the delay was not applied (${slow#* } s < 0.4 s)"; }

impair 5 200
sleep "$HOLD" # the impairment lasts this long (the property is observed afterwards)
l=$(metric ahg_emulator_listeners)
t=$(metric ahg_emulator_listen_total)
kill -0 "$CPID" 2>/dev/null || { kill $APP; fail "the client exited under delay/loss"; }
delay="200 ms delay (netem) + "
[ $NETEM = 1 ] || delay="200 ms delay (delay_proxy.py) + "
echo "rel_netem: after ${HOLD}s of ${delay}5% loss each way: listeners=$l listen_total=$t"
[ "$l" = 1 ] || { kill $APP; fail "the control channel was lost under delay/loss"; }
[ "$t" = "$total0" ] || echo "rel_netem: note: the client reconnected during delay/loss"
impair 0 0

# blackout: every packet dropped for 10 s
impair 100 0
start=$SECONDS
sleep 10
impair 0 0
# the client notices the dead channel (keepalive 2 s) and reconnects
ok=0
end=$((SECONDS + 40))
while [ $SECONDS -lt $end ]; do
    t2=$(metric ahg_emulator_listen_total)
    l2=$(metric ahg_emulator_listeners)
    if [ -n "$t2" ] && [ "$t2" -gt "$t" ] && [ "$l2" -ge 1 ]; then ok=1; break; fi
    sleep 0.2
done
kill $APP 2>/dev/null
kill -0 "$CPID" 2>/dev/null || fail "the client exited after the blackout"
[ $ok = 1 ] || fail "no reconnect within 40 s after a 10 s blackout"
echo "rel_netem: 10 s blackout: reconnected $((SECONDS - start - 10)) s after the link came back" \
    "(listen_total $t -> $t2, listeners=$l2)"
# how long the relay keeps the dead channel of before the blackout (observed, not asserted)
if [ "$l2" -gt 1 ]; then
    t0=$SECONDS
    if wait_metric ahg_emulator_listeners 1 30; then
        echo "rel_netem: the relay dropped the dead listener $((SECONDS - t0)) s later"
    else
        echo "rel_netem: the relay still counted $(metric ahg_emulator_listeners) listeners 30 s later"
    fi
fi
echo "rel_netem: PASS"
