#!/usr/bin/env bash
# The state store against a hostile host (issue 12): temp files a killed writer left under the
# PID the next plugin gets (a plugin in a PID namespace is always PID 1), FIFOs and directories
# where records belong, a state tree another user can write, files named by a conf that are not
# regular files or are huge, and invalid UTF-8 in a conf. Every plugin call is bounded by
# `timeout`: a hang is a failure, not a stuck test.
source "$(dirname "$0")/lib.sh"
IPAM="$PLUGINS/ipam"
HOST_LOCAL=$REF/host-local
conf() { # <name> <subnet> [extra top-level json]
    echo "{\"cniVersion\":\"1.1.0\",\"name\":\"$1\",\"type\":\"bridge\"${3:-},\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"$2\"}]]}}"
}

# bounded <seconds> <COMMAND> <containerid> <conf> [extra env…]: the plugin, killed after <seconds>.
# Sets RC (124: it hung) and OUT.
bounded() {
    local secs=$1 cmd=$2 id=$3 input=$4
    shift 4
    set +e
    OUT=$(printf '%s' "$input" | env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS=/run/netns/x CNI_IFNAME=eth0 \
        CNI_PATH="$PLUGINS" "$@" timeout -s KILL "$secs" "$IPAM")
    RC=$?
    set -e
}
msg() { jq -r '.msg // empty' <<<"$OUT" 2>/dev/null || echo "unparsable: $OUT"; }
leases_of() { find "$CNM_STATE_DIR/ipam" -type d -name leases -path "*:$1/$2_*" | head -1; } # <network> <subnet address>

# --- 1. A dead writer's temp files under our PID never block a write ------------------------------
N=10.213.210
cni "$IPAM" ADD warm /run/netns/x eth0 "$(conf pidnet $N.0/24)"
expect_eq "setup ADD" 0 "$RC"
pid_leases=$(leases_of pidnet $N.0)
[ -n "$pid_leases" ] || fail "no leases directory for pidnet"
# Leave, in every directory of the tree, what a writer that was PID 1 left when killed (the
# names a writer of the old scheme, .tmp-<pid>-<counter>, would take first), two minutes old.
while read -r dir; do
    for n in $(seq 0 63); do echo -n '{"torn":' >"$dir/.tmp-1-$n"; done
    echo -n '{' >"$dir/.tmp-00112233445566ff"  # a new-scheme temp of a dead writer
    touch -d '2 minutes ago' "$dir"/.tmp-*
done < <(find "$CNM_STATE_DIR" -type d)
planted=$(find "$CNM_STATE_DIR" -name '.tmp-*' | wc -l)
for i in 1 2 3; do
    set +e
    OUT=$(printf '%s' "$(conf pidnet $N.0/24)" | env CNI_COMMAND=ADD CNI_CONTAINERID="pid1-$i" CNI_NETNS=/run/netns/x \
        CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" timeout -s KILL 20 unshare --pid --fork "$IPAM")
    RC=$?
    set -e
    expect_eq "ADD $i as PID 1 over a dead PID 1's temp files" 0 "$RC"
    [ "$RC" -eq 0 ] || echo "  $(msg)" >&2
done
expect_eq "four leases" 4 "$(find "$pid_leases" -type f ! -name '.*' | wc -l)"
set +e
OUT=$(printf '%s' "$(conf pidnet $N.0/24)" | env CNI_COMMAND=DEL CNI_CONTAINERID=pid1-1 CNI_NETNS=/run/netns/x \
    CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" timeout -s KILL 20 unshare --pid --fork "$IPAM")
RC=$?
set -e
expect_eq "DEL as PID 1" 0 "$RC"
# A GC lists the lease and endpoint directories, and so sweeps their dead writers' temps.
cni "$IPAM" GC "" "" "" "$(conf pidnet $N.0/24 ',"cni.dev/valid-attachments":[{"containerID":"warm","ifname":"eth0"},{"containerID":"pid1-2","ifname":"eth0"},{"containerID":"pid1-3","ifname":"eth0"}]')"
expect_eq "GC" 0 "$RC"
expect_eq "GC swept the leases directory's dead temps" 0 "$(find "$pid_leases" -name '.tmp-*' | wc -l)"
left=$(find "$CNM_STATE_DIR" -name '.tmp-*' | wc -l)
CHECKS=$((CHECKS + 1))
if [ "$left" -lt "$planted" ]; then pass "temps swept: $planted planted, $left left"; else fail "no temp swept ($left of $planted)"; fi
for id in warm pid1-2 pid1-3; do cni "$IPAM" DEL $id /run/netns/x eth0 "$(conf pidnet $N.0/24)"; done

# --- 2. A FIFO, a directory or an empty file where a record belongs ------------------------------
N=10.213.211
net=fifonet
cni "$IPAM" ADD f1 /run/netns/x eth0 "$(conf $net $N.0/24)"
expect_eq "setup ADD f1" 0 "$RC"
ep="$CNM_STATE_DIR/networks/$net/endpoints/f1@eth0.json"
[ -f "$ep" ] || fail "no endpoint record at $ep"
rm -f "$ep" && mkfifo "$ep"
bounded 10 DEL f1 "$(conf $net $N.0/24)"
expect_eq "DEL with a FIFO as its endpoint record returns (does not wait on it)" 0 "$RC"
[ "$RC" -eq 0 ] || echo "  $(msg)" >&2
bounded 10 ADD f1 "$(conf $net $N.0/24)"
CHECKS=$((CHECKS + 1))
if [ "$RC" -ne 124 ]; then pass "ADD over a FIFO record returns: rc $RC $(msg)"; else fail "ADD over a FIFO record hung"; fi
rm -f "$ep"; bounded 10 DEL f1 "$(conf $net $N.0/24)"

for kind in fifo dir empty; do
    cni "$IPAM" ADD "l-$kind" /run/netns/x eth0 "$(conf $net $N.0/24)"
    expect_eq "setup ADD l-$kind" 0 "$RC"
    ip=$(jq -r '.ips[0].address' <<<"$OUT" | cut -d/ -f1)
    leases=$(leases_of $net $N.0)
    rm -f "$leases/$ip"
    case $kind in
        fifo) mkfifo "$leases/$ip" ;;
        dir) mkdir -p "$leases/$ip/sub" && echo x >"$leases/$ip/sub/f" ;;
        empty) : >"$leases/$ip" ;;
    esac
    bounded 10 CHECK "l-$kind" "$(conf $net $N.0/24 ",\"prevResult\":$OUT")"
    CHECKS=$((CHECKS + 1))
    if [ "$RC" -ne 124 ]; then pass "CHECK with a lease that is a $kind returns: rc $RC"; else fail "CHECK hung on a lease that is a $kind"; fi
    bounded 10 DEL "l-$kind" "$(conf $net $N.0/24)"
    expect_eq "DEL with a lease that is a $kind" 0 "$RC"
    if [ -e "$leases/$ip" ]; then
        # What DEL left (not this lease's owner any more, as far as it can tell), GC must reclaim.
        bounded 10 GC "" "$(conf $net $N.0/24 ',"cni.dev/valid-attachments":[]')"
        expect_eq "GC with a lease that is a $kind" 0 "$RC"
    fi
    expect_eq "the $kind lease is reclaimed" no "$([ -e "$leases/$ip" ] && echo yes || echo no)"
done

# --- 3. A state tree another user can write is refused --------------------------------------------
N=10.213.212
cni "$IPAM" ADD t1 /run/netns/x eth0 "$(conf trustnet $N.0/24)"
expect_eq "setup ADD t1" 0 "$RC"
before=$(state_snapshot)
chmod 0777 "$CNM_STATE_DIR"
cni "$IPAM" ADD t2 /run/netns/x eth0 "$(conf trustnet $N.0/24)"
expect_eq "ADD into a 0777 state dir fails" 1 "$RC"
expect_eq "…naming it and why" yes "$(msg | grep -qF "$CNM_STATE_DIR: it is writable by others (mode 0777)" && echo yes || echo "no: $(msg)")"
cni "$IPAM" DEL t1 /run/netns/x eth0 "$(conf trustnet $N.0/24)"
expect_eq "DEL from a 0777 state dir fails too (its records cannot be trusted)" 1 "$RC"
chmod 0700 "$CNM_STATE_DIR"
chown nobody "$CNM_STATE_DIR/networks/trustnet"
cni "$IPAM" ADD t2 /run/netns/x eth0 "$(conf trustnet $N.0/24)"
expect_eq "ADD with a network directory owned by nobody fails" 1 "$RC"
expect_eq "…naming it" yes "$(msg | grep -qF "$CNM_STATE_DIR/networks/trustnet: it is owned by uid $(id -u nobody)" && echo yes || echo "no: $(msg)")"
chown root "$CNM_STATE_DIR/networks/trustnet"
expect_eq "nothing changed meanwhile" "$before" "$(state_snapshot)"
cni "$IPAM" DEL t1 /run/netns/x eth0 "$(conf trustnet $N.0/24)"
expect_eq "DEL once the tree is ours again" 0 "$RC"

# --- 4. Files a conf names: only regular files, at most 64 KiB ------------------------------------
N=10.213.213
mkfifo "$WORK/resolv.fifo"
head -c 1048576 /dev/zero | tr '\0' '#' >"$WORK/resolv.big"
printf 'nameserver 10.213.213.53\nsearch e2e.test\n' >"$WORK/resolv.conf"
resolv() { echo "{\"cniVersion\":\"1.1.0\",\"name\":\"dnsnet\",\"type\":\"bridge\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"$N.0/24\"}]],\"resolvConf\":\"$1\"}}"; }
before=$(state_snapshot)
for f in /dev/zero "$WORK/resolv.fifo" "$WORK/resolv.big" "$WORK"; do
    start=$(date +%s%N)
    bounded 5 ADD r1 "$(resolv "$f")"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    expect_eq "resolvConf $f: refused (code 7)" "1 7" "$RC $(jq -r .code <<<"$OUT" 2>/dev/null)"
    CHECKS=$((CHECKS + 1))
    if [ "$ms" -lt 3000 ] && msg | grep -qF "ipam.resolvConf"; then pass "…at once ($ms ms): $(msg)"; else fail "…took $ms ms: $(msg)"; fi
done
expect_eq "refused resolvConf files changed no state" "$before" "$(state_snapshot)"
cni "$IPAM" ADD r1 /run/netns/x eth0 "$(resolv "$WORK/resolv.conf")"
expect_eq "a regular resolvConf is read" "0 10.213.213.53" "$RC $(jq -r '.dns.nameservers[0]' <<<"$OUT")"
cni "$IPAM" DEL r1 /run/netns/x eth0 "$(resolv "$WORK/resolv.conf")"

# --- 5. Invalid UTF-8 in a conf's strings: decoded as the reference decodes it ---------------------
N=10.213.214
mkdir -p "$WORK/hl"
utf() { # <name json bytes> <extra>
    printf '{"cniVersion":"1.0.0","name":"%b","type":"%s"%b,"ipam":{"type":"%s","dataDir":"%s","ranges":[[{"subnet":"%s.0/24"}]]}}' \
        "$1" "$3" "$2" "$3" "$4" "$N"
}
for case in 'n\xff|' 'u8net|,"label":"a\xffb","lab\xfe":1,"s":"\\ud800"'; do
    name=${case%%|*}; extra=${case#*|}
    # The reference first (host-local with its own dataDir), then ours.
    set +e
    ref_out=$(utf "$name" "$extra" host-local "$WORK/hl" | env CNI_COMMAND=ADD CNI_CONTAINERID=u1 CNI_NETNS=/run/netns/x \
        CNI_IFNAME=eth0 CNI_PATH="$REF" timeout -s KILL 10 "$HOST_LOCAL")
    ref_rc=$?
    set -e
    ours_conf=$(utf "$name" "$extra" ipam "$CNM_STATE_DIR")
    bounded 10 ADD u1 "$ours_conf"
    ref_code=$(jq -r '.code // 0' <<<"$ref_out" 2>/dev/null || echo "?")
    expect_eq "name \"$name\" extra [$extra]: same outcome as host-local (rc, code)" "$ref_rc $ref_code" "$RC $(jq -r '.code // 0' <<<"$OUT" 2>/dev/null)"
    if [ "$RC" -ne 0 ]; then
        expect_eq "…the key is named" yes "$(msg | grep -q 'network name' && echo yes || echo "no: $(msg)")"
        expect_eq "…the error is valid UTF-8" yes "$(printf '%s' "$OUT" | iconv -f UTF-8 -t UTF-8 >/dev/null 2>&1 && echo yes || echo no)"
    else
        bounded 10 DEL u1 "$ours_conf"
        expect_eq "…DEL" 0 "$RC"
    fi
done

finish
