#!/usr/bin/env bash
# cnm-shim's HTTP bounds, without Docker: clients that are idle or slow never delay a well-formed
# call, a request that trickles in is dropped when its total time runs out (not when one read
# does), connections beyond the cap displace idle ones, and a body that is not UTF-8 is a 400
# that says so. The shim runs in a netns of its own (it opens netlink at start; it changes nothing
# here) on a socket under $WORK; the slow clients are one python3 process (Debian's), killed by
# PID in the EXIT trap like the shim.
source "$(dirname "$0")/lib.sh"
SHIM=$BUILD/cnm-shim/cnm-shim
SOCK=$WORK/s.sock
PY=/usr/bin/python3
NS=$(new_netns shim)

ip netns exec "$NS" "$SHIM" serve --socket "$SOCK" --state-dir "$WORK/state" >>"$WORK/shim.log" 2>&1 &
SHIM_PID=$!
PIDS+=("$SHIM_PID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "shim did not start:" >&2; cat "$WORK/shim.log" >&2; exit 1; }
trap 'if [ "$FAILS" -gt 0 ]; then echo "--- shim log (tail)" >&2; tail -n 30 "$WORK/shim.log" >&2; fi; cleanup' EXIT

# call <Method> [body]: prints "<http code> <seconds>"; the body goes to $WORK/reply. Without a
# body it sends Content-Length: 0, as Docker does (without one, a POST's body lasts until EOF).
call() {
    local length=(-H "Content-Length: 0")
    [ -z "${2:-}" ] || length=(--data-binary "$2")
    curl -s --max-time 10 --unix-socket "$SOCK" -XPOST "http://plugin/$1" "${length[@]}" \
        -o "$WORK/reply" -w '%{http_code} %{time_total}' || echo "curl-failed 10"
}
# within_1s <what> <Method> [body]: the call answers 200 in under a second.
within_1s() {
    local r code secs
    r=$(call "$2" "${3:-}"); code=${r%% *}; secs=${r##* }
    CHECKS=$((CHECKS + 1))
    if [ "$code" == 200 ] && awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }'; then
        pass "$1 (200 in ${secs} s)"
    else
        fail "$1: got $code after ${secs} s"
    fi
}

# Slow clients: IDLE connections that send nothing, TRICKLE ones that send a request one byte a
# second (and reconnect when dropped). Each trickler's first connection records how long it lived.
cat >"$WORK/slow.py" <<'EOF'
import socket, sys, time, select
path, idle_n, trickle_n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.setblocking(False)
    return s
idle = [connect() for _ in range(idle_n)]
request = b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
tricklers = [[connect(), 0, time.monotonic(), True] for _ in range(trickle_n)]  # sock, sent, since, first
open(out + ".ready", "w").close()
lived = []
while True:
    now = time.monotonic()
    for t in tricklers:
        dropped = False
        try:
            if t[0].recv(4096, socket.MSG_DONTWAIT) == b"":
                dropped = True
        except BlockingIOError:
            pass
        except OSError:
            dropped = True
        if not dropped:
            try:
                t[0].send(request[t[1] % len(request):][:1])
                t[1] += 1
            except OSError:
                dropped = True
        if dropped:
            if t[3]:
                lived.append(now - t[2])
                with open(out, "w") as f:
                    f.write(" ".join("%.1f" % x for x in lived) + "\n")
            t[0].close()
            t[0], t[1], t[2], t[3] = connect(), 0, time.monotonic(), False
    time.sleep(1)
EOF

# ---- 16 idle connections and 8 tricklers; calls answer at once, now and later ----
"$PY" "$WORK/slow.py" "$SOCK" 16 8 "$WORK/lived" &
SLOW_PY=$!
PIDS+=("$SLOW_PY")
for _ in $(seq 100); do [ -f "$WORK/lived.ready" ] && break; sleep 0.05; done
# …and a body trickled by curl at 100 bytes a second (it would take 30 s)
head -c 3000 /dev/zero | tr '\0' ' ' >"$WORK/slow"
curl -s --max-time 20 --limit-rate 100 --unix-socket "$SOCK" -XPOST http://plugin/NetworkDriver.Join \
    --data-binary @"$WORK/slow" -o "$WORK/slow-reply" -w '%{http_code} %{time_total}' >"$WORK/slow-status" 2>/dev/null &
SLOW_CURL=$!
PIDS+=("$SLOW_CURL")
sleep 1.5
within_1s "GetCapabilities with 16 idle and 8 trickling clients" NetworkDriver.GetCapabilities
expect_eq "…and its reply" '{"ConnectivityScope":"local","Scope":"local"}' "$(jq -c . "$WORK/reply")"
within_1s "GetDefaultAddressSpaces with 16 idle and 8 trickling clients" IpamDriver.GetDefaultAddressSpaces
expect_eq "…and its reply has the local space" "1" "$(jq 'has("LocalDefaultAddressSpace")' "$WORK/reply" | grep -c true)"
sleep 6   # past the request bound: every trickler has been dropped once and is trickling again
within_1s "GetCapabilities again, the tricklers on their second connections" NetworkDriver.GetCapabilities
read -ra lived <"$WORK/lived" || lived=()
expect_eq "all 8 tricklers were dropped" "8" "${#lived[@]}"
late=0
# (slow.py notices a drop at its next one-second tick, and may run late on a loaded machine)
early=0
for l in "${lived[@]}"; do
    awk -v s="$l" 'BEGIN { exit !(s > 7.5) }' && late=$((late + 1))
    awk -v s="$l" 'BEGIN { exit !(s < 4.5) }' && early=$((early + 1))
done
expect_eq "…each at the 5 s request bound (lived: ${lived[*]} s)" "0 late, 0 early" "$late late, $early early"
wait "$SLOW_CURL" || true
read -r code secs <"$WORK/slow-status" || true
expect_eq "the trickled body is answered 400" "400" "${code:-}"
expect_eq "…saying it did not arrive in time" '"cnm-shim: the request did not arrive within 5 s"' "$(jq -c .Err "$WORK/slow-reply")"
CHECKS=$((CHECKS + 1)); if awk -v s="${secs:-99}" 'BEGIN { exit !(s < 6.5) }'; then pass "…after ${secs} s"; else fail "the trickled body was answered after ${secs:-?} s"; fi
kill "$SLOW_PY"; wait "$SLOW_PY" 2>/dev/null || true

# ---- more idle connections than the shim serves at once: the newest displace the oldest ----
"$PY" "$WORK/slow.py" "$SOCK" 300 0 "$WORK/lived2" &
PIDS+=("$!")
for _ in $(seq 200); do [ -f "$WORK/lived2.ready" ] && break; sleep 0.05; done
sleep 0.5
within_1s "GetCapabilities with 300 idle clients" NetworkDriver.GetCapabilities
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# ---- a body that is not UTF-8 ----
before=$(state_snapshot)
r=$(call IpamDriver.RequestPool "$(printf '{"AddressSpace":"\xff\xfe","Pool":"10.213.90.0/24"}')")
expect_eq "a body with invalid UTF-8 is a 400" "400" "${r%% *}"
expect_eq "…whose Err says the body is not UTF-8, at which byte" '"cnm-shim: the request body is not valid UTF-8 (at byte 17)"' "$(jq -c .Err "$WORK/reply")"
r=$(call IpamDriver.RequestPool "$(printf '{"AddressSpace":"\xc0\xaf"}')")
expect_eq "an overlong encoding is invalid UTF-8 too" "400" "${r%% *}"
r=$(call IpamDriver.RequestPool "$(printf '{"AddressSpace":"\xed\xa0\x80"}')")
expect_eq "…and so is a UTF-16 surrogate" "400" "${r%% *}"
r=$(curl -s --max-time 10 --unix-socket "$SOCK" -XPOST "http://plugin/Net%FFwork" -H "Content-Length: 0" -o "$WORK/reply" -w '%{http_code}' || echo curl-failed)
expect_eq "a path that is not UTF-8 is a 400 too" "400" "$r"
expect_eq "…with an Err" '"cnm-shim: the request path is not valid UTF-8 (at byte 4)"' "$(jq -c .Err "$WORK/reply")"
expect_eq "invalid UTF-8 changed no state" "$before" "$(state_snapshot)"
within_1s "the shim still serves" NetworkDriver.GetCapabilities

# ---- one shim per state directory: its address hint knows only the endpoints it made ----
before=$(state_snapshot)
rc=0; timeout 10 ip netns exec "$NS" "$SHIM" serve --socket "$WORK/second.sock" --state-dir "$WORK/state" >"$WORK/second.log" 2>&1 || rc=$?
expect_eq "a second shim on the same state directory exits 1 (not serving: 124)" "1" "$rc"
expect_eq "…and says which shim holds it" "yes" \
    "$(grep -q "another cnm-shim (pid $SHIM_PID) serves the state directory" "$WORK/second.log" && echo yes || { cat "$WORK/second.log" >&2; echo no; })"
expect_eq "…and changes no state" "$before" "$(state_snapshot)"
within_1s "the first shim still serves" NetworkDriver.GetCapabilities

# ---- SIGTERM with idle and half-sent requests open: the shim stops at once, socket removed ----
"$PY" "$WORK/slow.py" "$SOCK" 10 2 "$WORK/lived3" &
PIDS+=("$!")
for _ in $(seq 100); do [ -f "$WORK/lived3.ready" ] && break; sleep 0.05; done
sleep 1.5
t0=$(date +%s%N)
kill -TERM "$SHIM_PID"
rc=0; wait "$SHIM_PID" || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
PIDS[0]=""
expect_eq "SIGTERM stops the shim cleanly" "0" "$rc"
CHECKS=$((CHECKS + 1)); if [ "$ms" -lt 1000 ]; then pass "…in ${ms} ms, not waiting for the idle clients"; else fail "SIGTERM took ${ms} ms"; fi
expect_eq "…and removes its socket" "no" "$([ -e "$SOCK" ] && echo yes || echo no)"

# ---- the state directory is free again once the shim is gone (also after kill -9) ----
# (after a kill -9 the old socket is still there until the new shim replaces it: wait for its log)
last=TERM
for how in KILL TERM; do
    served=$(grep -c "^cnm-shim: serving" "$WORK/shim.log")
    ip netns exec "$NS" "$SHIM" serve --socket "$SOCK" --state-dir "$WORK/state" >>"$WORK/shim.log" 2>&1 &
    PIDS[0]=$!
    for _ in $(seq 100); do [ "$(grep -c "^cnm-shim: serving" "$WORK/shim.log")" -gt "$served" ] && break; sleep 0.05; done
    within_1s "a new shim serves the state directory after the last one's SIG$last" NetworkDriver.GetCapabilities
    kill -"$how" "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
    PIDS[0]=""
    last=$how
done

finish
