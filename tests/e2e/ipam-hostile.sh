#!/usr/bin/env bash
# Hostile input to the built `ipam`: each case must give the right CNI error code, print one
# error object on stdout, exit 1, and leave the state directory byte-for-byte unchanged.
source "$(dirname "$0")/lib.sh"
IPAM="$PLUGINS/ipam"
good='{"cniVersion":"1.1.0","name":"hostile","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.70.0/24"}]]}}'
with() { jq -c "$1" <<<"$good"; } # a variation of the good conf

# A live attachment, so "unchanged" covers real records.
cni "$IPAM" ADD live /run/netns/x eth0 "$good"
[ "$RC" -eq 0 ] || { echo "setup ADD failed: $OUT" >&2; exit 1; }

# hostile <description> <expected code> <command> <containerid> <ifname> <stdin> [env…]
hostile() {
    local desc=$1 code=$2 cmd=$3 id=$4 ifname=$5 input=$6
    shift 6
    local before after
    before=$(state_snapshot)
    set +e
    OUT=$(printf '%s' "$input" | env -i PATH="$PATH" CNM_STATE_DIR="$CNM_STATE_DIR" CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" \
        CNI_NETNS=/run/netns/x CNI_IFNAME="$ifname" CNI_PATH="$PLUGINS" "$@" "$IPAM" 2>"$WORK/stderr")
    RC=$?
    set -e
    after=$(state_snapshot)
    CHECKS=$((CHECKS + 1))
    local got
    got=$(jq -r '.code' <<<"$OUT" 2>/dev/null || echo "unparsable: $OUT")
    if [ "$RC" -ne 1 ]; then fail "$desc: exit $RC"; return; fi
    if [ "$got" != "$code" ]; then fail "$desc: code $got, expected $code ($(jq -r .msg <<<"$OUT" 2>/dev/null))"; return; fi
    if [ "$(jq -r '.msg | length > 0' <<<"$OUT")" != true ]; then fail "$desc: no msg"; return; fi
    if [ "$before" != "$after" ]; then fail "$desc: state changed"; diff <(echo "$before") <(echo "$after") >&2 || true; return; fi
    pass "$desc → $code: $(jq -r .msg <<<"$OUT")"
}

hostile "not JSON"                         6 ADD c1 eth0 '{"cniVersion":'
hostile "empty stdin"                      6 ADD c1 eth0 ''
hostile "JSON array"                       6 ADD c1 eth0 '[1,2,3]'
hostile "JSON string"                      6 ADD c1 eth0 '"conf"'
hostile "binary garbage"                   6 ADD c1 eth0 "$(printf '\x01\x02\xff\xfe')"
hostile "name of wrong type"               7 ADD c1 eth0 "$(with '.name = 5')"
hostile "name with ../"                    7 ADD c1 eth0 "$(with '.name = "../../etc"')"
hostile "name with a slash"                7 ADD c1 eth0 "$(with '.name = "a/b"')"
hostile "name too long"                    7 ADD c1 eth0 "$(with '.name = ("n" * 300)')"
hostile "name missing"                     7 ADD c1 eth0 "$(with 'del(.name)')"
hostile "unknown cniVersion"               1 ADD c1 eth0 "$(with '.cniVersion = "9.9.9"')"
hostile "cniVersion of wrong type"         7 ADD c1 eth0 "$(with '.cniVersion = 1')"
hostile "CHECK at 0.3.1"                   1 CHECK live eth0 "$(with '.cniVersion = "0.3.1"')"
hostile "CHECK at 0.1.0 (no version)"      1 CHECK live eth0 "$(with 'del(.cniVersion)')"
hostile "STATUS at 1.0.0"                  1 STATUS "" "" "$(with '.cniVersion = "1.0.0"')"
hostile "GC at 0.4.0"                      1 GC "" "" "$(with '.cniVersion = "0.4.0" | .["cni.dev/valid-attachments"] = []')"
hostile "unknown CNI_COMMAND"              4 FROB c1 eth0 "$good"
hostile "lower-case CNI_COMMAND"           4 add c1 eth0 "$good"
hostile "empty CNI_CONTAINERID"            3 ADD "" eth0 "$good"
hostile "CNI_CONTAINERID with ../"         4 ADD "../../etc/passwd" eth0 "$good"
hostile "CNI_CONTAINERID with a slash"     4 DEL "a/b" eth0 "$good"
hostile "CNI_CONTAINERID huge"             4 ADD "$(head -c 5000 /dev/zero | tr '\0' a)" eth0 "$good"
hostile "ifname of 16 characters"          4 ADD c1 0123456789abcdef "$good"
hostile "ifname with a slash"              4 ADD c1 "e/0" "$good"
hostile "ifname .."                        4 ADD c1 ".." "$good"
hostile "ifname with a colon"              4 ADD c1 "eth:0" "$good"
hostile "ifname with a space"              4 ADD c1 "eth 0" "$good"
hostile "ifname empty"                     4 ADD c1 "" "$good"
hostile "CNI_NETNS empty on ADD"           4 ADD c1 eth0 "$good" CNI_NETNS=
hostile "unknown CNI_ARGS key"             4 ADD c1 eth0 "$good" CNI_ARGS="FOO=bar"
hostile "malformed CNI_ARGS"               4 ADD c1 eth0 "$good" CNI_ARGS="IP"
hostile "CNI_ARGS IP not an address"       4 ADD c1 eth0 "$good" CNI_ARGS="IP=10.213.70.999"
hostile "ipam of wrong type"               7 ADD c1 eth0 "$(with '.ipam = "host-local"')"
hostile "ipam missing"                     7 ADD c1 eth0 "$(with 'del(.ipam)')"
hostile "ranges of wrong type"             7 ADD c1 eth0 "$(with '.ipam.ranges = {"a":1}')"
hostile "subnet with host bits"            7 ADD c1 eth0 "$(with '.ipam.ranges = [[{"subnet":"10.213.70.5/24"}]]')"
hostile "prefix out of range"              7 ADD c1 eth0 "$(with '.ipam.ranges = [[{"subnet":"10.213.70.0/99"}]]')"
hostile "huge rangeStart value"            7 ADD c1 eth0 "$(with '.ipam.ranges = [[{"subnet":"10.213.70.0/24","rangeStart":("1" * 1000000)}]]')"
hostile "overlapping range sets"           7 ADD c1 eth0 "$(with '.ipam.ranges = [[{"subnet":"10.213.70.0/24"}],[{"subnet":"10.213.70.0/25"}]]')"
hostile "routes of wrong type"             7 ADD c1 eth0 "$(with '.ipam.routes = [{"dst":5}]')"
hostile "dns of wrong type"                7 ADD c1 eth0 "$(with '.dns = ["8.8.8.8"]')"
hostile "args.cni.ips of wrong type"       7 ADD c1 eth0 "$(with '.args = {"cni":{"ips":"10.213.70.9"}}')"
hostile "runtimeConfig.ips not addresses"  7 ADD c1 eth0 "$(with '.runtimeConfig = {"ips":["bogus"]}')"
hostile "relative dataDir"                 7 ADD c1 eth0 "$(with '.dataDir = "relative/state"')"
hostile "prevResult malformed on CHECK"    7 CHECK live eth0 "$(with '.prevResult = {"ips":[{"address":"x"}]}')"
hostile "GC list of wrong type"            7 GC "" "" "$(with '.["cni.dev/valid-attachments"] = "all"')"
hostile "subnet that disagrees"            7 ADD c1 eth0 "$(with '.ipam.ranges = [[{"subnet":"10.213.71.0/24"}]]')"
hostile "ADD twice"                      103 ADD live eth0 "$good"
hostile "requested address taken"        102 ADD c1 eth0 "$good" CNI_ARGS="IP=10.213.70.2"
hostile "requested address is the gateway" 102 ADD c1 eth0 "$good" CNI_ARGS="IP=10.213.70.1"
hostile "20 MiB of stdin"                  5 ADD c1 eth0 "$(head -c 20000000 /dev/zero | tr '\0' ' ')"
deep=$(head -c 200000 /dev/zero | tr '\0' '[')$(head -c 200000 /dev/zero | tr '\0' ']')
hostile "deeply nested JSON (200000 levels)" 6 ADD c1 eth0 "{\"cniVersion\":\"1.1.0\",\"name\":\"hostile\",\"custom\":$deep}"

# Corrupt documents: ADD is a clear error; nothing is rewritten.
net="$CNM_STATE_DIR/networks/hostile/network.json"
cp "$net" "$WORK/network.json.bak"
: >"$net"
hostile "empty network record on ADD"    101 ADD c1 eth0 "$good"
head -c 40 "$WORK/network.json.bak" >"$net"
hostile "truncated network record on ADD" 101 ADD c1 eth0 "$good"
cp "$WORK/network.json.bak" "$net"
pool="$CNM_STATE_DIR/ipam/cni:hostile/10.213.70.0_24/pool.json"
cp "$pool" "$WORK/pool.json.bak"
echo 'garbage' >"$pool"
hostile "corrupt pool record on ADD"     101 ADD c1 eth0 "$good"
cp "$WORK/pool.json.bak" "$pool"

# A symlink planted where a network directory goes is refused, and its target untouched.
mkdir -p "$WORK/victim"
ln -s "$WORK/victim" "$CNM_STATE_DIR/networks/planted"
hostile "symlink in the state tree"        5 ADD c1 eth0 "$(with '.name = "planted"')"
expect_eq "symlink target untouched" 0 "$(ls -A "$WORK/victim" | wc -l)"
rm "$CNM_STATE_DIR/networks/planted"

# A read-only state directory: ADD fails clearly (code 5), DEL of an attachment it never held
# succeeds (nothing to free), and neither changes anything.
ro() { unshare -m --propagation private sh -c "mount --bind -o ro '$CNM_STATE_DIR' '$CNM_STATE_DIR' && exec \"\$@\"" ro "$@"; }
before=$(state_snapshot)
for cmd in ADD DEL; do
    set +e
    OUT=$(printf '%s' "$good" | CNI_COMMAND=$cmd CNI_CONTAINERID=live2 CNI_NETNS=/run/netns/x CNI_IFNAME=eth0 ro "$IPAM")
    RC=$?
    set -e
    if [ $cmd == ADD ]; then
        expect_eq "read-only state dir: ADD exit" 1 "$RC"
        expect_eq "read-only state dir: ADD code" 5 "$(jq .code <<<"$OUT")"
    else
        expect_eq "read-only state dir: DEL of an unknown attachment succeeds" 0 "$RC"
    fi
done
expect_eq "read-only state dir: state unchanged" "$before" "$(state_snapshot)"

# Corrupt documents on DEL and GC count as absent.
ep="$CNM_STATE_DIR/networks/hostile/endpoints/live@eth0.json"
: >"$ep"
cni "$IPAM" DEL live "" eth0 "$good"
expect_eq "DEL with an empty endpoint record succeeds" 0 "$RC"
expect_eq "...and frees its lease by owner" 0 "$(lease_count)"
expect_eq "nothing on stderr that is not a log" "" "$(cat "$WORK/stderr")"
finish
