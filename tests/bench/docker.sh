#!/usr/bin/env bash
# The Docker bench (tests/bench/run.sh docker [--reps N] [--keep-log DIR]): one dockerd (Debian's
# docker.io 20.10, in a netns of its own, as the e2e tiers start it) and one `cnm-shim serve` in the
# same netns, found by that dockerd as driver cnmt<pid>; the same image (cnm-bb:1, busybox-static,
# imported offline). In N interleaved rounds (the three commands of a round in each of their 6
# orders in turn), medians:
#   1. `docker run --rm cnm-bb:1 true` on a cnm bridge network (-d/--ipam-driver the shim,
#      10.213.224.0/24) vs on a network of Docker's own bridge driver (10.213.225.0/24), with
#      `--network none` in the same rounds as the floor (a container with no network at all);
#   2. `docker network create` and, timed separately, `docker network rm` through the shim vs the
#      bridge driver (same subnets, after the networks of 1. are gone), with a CLI round trip
#      (`docker network inspect none`) as the floor of any such command, and the same create and
#      rm through a remote driver that does nothing (tests/bench/noop_driver.cpp, driver cnmn<pid>
#      on /run/docker/plugins): the floor of any remote driver's create and rm, which pays
#      dockerd's plugin client and one HTTP call per step where the built-in driver pays none.
# Targets (issue 14): run, create and rm each <= 1.1x the bridge driver's.
# Beside them: the time the shim spent in its handlers (its log has each call's duration, in whole
# ms) per run / create / rm, which bounds what the shim itself adds; and the CPU time of dockerd,
# containerd and the shim (every thread's, from schedstat) per command, steadier than the wall time
# on a shared machine.
# Everything is the e2e helpers' (tests/e2e/lib.sh, docker-lib.sh, shim-lib.sh): dockerd and its
# containerd and shims are stopped by PID, its mounts undone, the shim stopped and its socket
# removed, the netns hdb-<pid>-docker and the temp dir removed at exit, also after a failure or
# a signal. --keep-log DIR copies dockerd's and the shim's logs there first. CNM_BENCH_TRACE=DIR:
# after the rounds, one more run, create and rm with the shim under strace -f -T -tt, then create
# and rm with each driver (the no-op one too) with dockerd under strace (files in DIR).
# shellcheck disable=SC2154 # the arrays are declared by name (declare -ga) and filled through namerefs
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=15 keep_log=""
while [ $# -gt 0 ]; do
    case $1 in
    --reps | --rounds) reps=$2; shift 2 ;;
    --keep-log) keep_log=$(realpath "$2"); shift 2 ;;
    *) echo "docker.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "docker.sh: --reps must be a positive number" >&2; exit 2; }
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build cnm-shim/cnm-shim tests/bench/noop-driver >/dev/null
for tool in /usr/sbin/dockerd /usr/bin/docker /bin/busybox; do
    [ -x $tool ] || { echo "docker.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

export BUILD=$PWD/build
# lib.sh: WORK, PIDS, the EXIT trap (cleanup) and set -euo pipefail; docker-lib.sh and shim-lib.sh
# wrap that cleanup so that it stops dockerd, then the shim, before WORK and the netns go.
source tests/e2e/lib.sh
source tests/e2e/docker-lib.sh
source tests/e2e/shim-lib.sh
trap 'exit 130' INT TERM HUP
# Our own netns (the bench's prefix), owned here: lib.sh's cleanup removes what $WORK/netns lists.
DOCKER_NETNS=hdb-$$-docker
echo "$DOCKER_NETNS" >>"$WORK/netns"
ip netns add "$DOCKER_NETNS"
ip -n "$DOCKER_NETNS" link set lo up

die() { echo "docker.sh: $*" >&2; [ -s "$WORK/out" ] && sed 's/^/  /' "$WORK/out" >&2; exit 1; }

docker_start
docker_image
shim_start
# The do-nothing remote driver, stopped (and its socket removed) right after dockerd, before the
# shim's cleanup removes the plugin directory it may have created.
NOOP=cnmn$$ NOOP_SOCK=/run/docker/plugins/cnmn$$.sock NOOP_PID=""
eval "_bench_noop_cleanup() $(declare -f cleanup | tail -n +2)"
cleanup() {
    docker_cleanup
    if [ -n "$NOOP_PID" ]; then kill -TERM "$NOOP_PID" 2>/dev/null || true; wait "$NOOP_PID" 2>/dev/null || true; fi
    rm -f "$NOOP_SOCK"
    _bench_noop_cleanup
}
build/tests/bench/noop-driver "$NOOP_SOCK" >>"$WORK/noop.log" 2>&1 &
NOOP_PID=$!
noop_up=0
for _ in $(seq 100); do
    curl -s --max-time 2 --unix-socket "$NOOP_SOCK" -XPOST -H "Content-Length: 0" http://plugin/Plugin.Activate >/dev/null 2>&1 && { noop_up=1; break; }
    kill -0 "$NOOP_PID" 2>/dev/null || break
    sleep 0.05
done
[ "$noop_up" -eq 1 ] || die "the no-op driver did not answer on $NOOP_SOCK: $(cat "$WORK/noop.log")"
# --keep-log DIR: the logs are copied before any of the cleanups above removes them.
if [ -n "$keep_log" ]; then
    mkdir -p "$keep_log"
    eval "_bench_cleanup() $(declare -f cleanup | tail -n +2)"
    cleanup() {
        cp -f "$DOCKER_DIR/dockerd.log" "$WORK/shim.log" "$WORK/noop.log" "$keep_log/" 2>/dev/null || true
        _bench_cleanup
    }
fi
CONTAINERD_PID=$(pgrep -P "$DOCKER_PID" -x containerd) || die "no containerd under dockerd $DOCKER_PID"
IMG=cnm-bb:1
CNM_SUBNET=10.213.224.0/24
BR_SUBNET=10.213.225.0/24
create_cnm() { dk network create -d "$P" --ipam-driver "$P" --subnet "$CNM_SUBNET" "$1"; }
create_br() { dk network create -d bridge --subnet "$BR_SUBNET" "$1"; }
NOOP_SUBNET=10.213.226.0/24
create_noop() { dk network create -d "$NOOP" --ipam-driver "$NOOP" --subnet "$NOOP_SUBNET" "$1"; }

# CPU_NS: the CPU time (ns, /proc/<pid>/task/*/schedstat, every thread) of the pids given; no fork.
cpu_ns() {
    local p f a
    CPU_NS=0
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            { read -r a _ <"$f"; } 2>/dev/null || continue
            CPU_NS=$((CPU_NS + a))
        done
    done
}
# timed <name> cmd…: runs cmd (output to $WORK/out); appends its wall time in µs to <name>, the CPU
# time of dockerd and containerd to <name>_cd, of the shim to <name>_cs, their sum to <name>_ct
# (µs). EPOCHREALTIME: no fork for the clock, so both sides pay only their command. The CPU of the
# short-lived runc and containerd-shim processes is not in it.
timed() {
    local -n into=$1 cd=${1}_cd cs=${1}_cs ct=${1}_ct
    shift
    local t0 t1 d0 s0 d1 s1
    cpu_ns "$DOCKER_PID" "$CONTAINERD_PID"; d0=$CPU_NS
    cpu_ns "$SHIM_PID"; s0=$CPU_NS
    t0=${EPOCHREALTIME/./}
    "$@" >"$WORK/out" 2>&1 || die "failed: $*"
    t1=${EPOCHREALTIME/./}
    cpu_ns "$DOCKER_PID" "$CONTAINERD_PID"; d1=$CPU_NS
    cpu_ns "$SHIM_PID"; s1=$CPU_NS
    into+=($((t1 - t0)))
    cd+=($(((d1 - d0) / 1000)))
    cs+=($(((s1 - s0) / 1000)))
    ct+=($(((d1 - d0 + s1 - s0) / 1000)))
}
# stats <µs…>: "median p90 min" in ms
stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { p = int(0.9 * NR + 0.5); if (p < 1) p = 1; if (p > NR) p = NR;
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m / 1000, v[p] / 1000, v[1] / 1000 }'; }
med() { stats "$@" | cut -d' ' -f1; }
# paired <a-array> <b-array>: median of the per-round ratios a[i]/b[i]
paired() {
    local -n a=$1 b=$2
    local i
    for i in "${!a[@]}"; do echo "${a[$i]} ${b[$i]}"; done | awk '$2 > 0 { print $1 / $2 }' | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# shim_ms <from-line>: whole ms the shim's handlers logged after line <from-line> of its log, and the calls
shim_ms() { tail -n +"$(($1 + 1))" "$WORK/shim.log" | awk '/ -> [0-9]+ in [0-9]+ ms/ { for (i = 1; i <= NF; i++) if ($i == "in") s += $(i + 1); n++ } END { printf "%d %d\n", s, n }'; }
shim_lines() { wc -l <"$WORK/shim.log"; }
# line <what> <a-name> <a-array> <b-name> <b-array> <target>: wall times, then the CPU times
line() {
    local what=$1 an=$2 bn=$4 target=$6
    local -n av=$3 bv=$5
    local am ap bm bp
    read -r am ap _ < <(stats "${av[@]}")
    read -r bm bp _ < <(stats "${bv[@]}")
    printf '%-22s %s %8.2f ms (p90 %8.2f)   %s %8.2f ms (p90 %8.2f)   %s/%s %5.2fx (paired %5.2fx)%s\n' "$what" "$an" "$am" "$ap" \
        "$bn" "$bm" "$bp" "$an" "$bn" "$(ratio "$am" "$bm")" "$(paired "$3" "$5")" "${target:+; target <= $target}"
    local -n acd=${3}_cd acs=${3}_cs act=${3}_ct bct=${5}_ct
    printf '%-22s cpu: %s %.2f ms (dockerd+containerd %.2f, shim %.2f)   %s %.2f ms   %s/%s %5.2fx (paired %5.2fx)\n' "" "$an" \
        "$(med "${act[@]}")" "$(med "${acd[@]}")" "$(med "${acs[@]}")" "$bn" "$(med "${bct[@]}")" "$an" "$bn" \
        "$(ratio "$(med "${act[@]}")" "$(med "${bct[@]}")")" "$(paired "${3}_ct" "${5}_ct")"
}

dk network create -d bridge --subnet 10.213.225.0/24 hdb-probe >"$WORK/out" 2>&1 || die "Docker's bridge driver cannot make a network here"
dk network rm hdb-probe >/dev/null
create_cnm hdb-cnm >"$WORK/out" 2>&1 || die "network create through the shim"
create_br hdb-br >"$WORK/out" 2>&1 || die "network create with the bridge driver"
# One untimed run each: the image's layers, the plugin's handles and the page cache are warm.
for n in hdb-cnm hdb-br none; do dk run --rm --network "$n" "$IMG" true >"$WORK/out" 2>&1 || die "run on $n"; done
# The container really is on the network it was asked for (the timed runs do the same).
got=$(dk run --rm --network hdb-cnm "$IMG" ip -4 -o addr show eth0 2>&1) || die "run on hdb-cnm: $got"
[[ $got == *10.213.224.* ]] || die "a container on hdb-cnm has no address of $CNM_SUBNET: $got"
got=$(dk run --rm --network hdb-br "$IMG" ip -4 -o addr show eth0 2>&1) || die "run on hdb-br: $got"
[[ $got == *10.213.225.* ]] || die "a container on hdb-br has no address of $BR_SUBNET: $got"

# Each of the 6 orders of the three in turn, so no one always goes first or follows the same one.
orders=("cnm br X" "br X cnm" "X cnm br" "X br cnm" "br cnm X" "cnm X br")
t_all=$SECONDS
for a in run_cnm run_br run_none mk_cnm mk_br mk_noop rm_cnm rm_br rm_noop cli; do declare -ga "$a=()" "${a}_cd=()" "${a}_cs=()" "${a}_ct=()"; done
shim_run=0 calls_run=0
for i in $(seq "$reps"); do
    order=${orders[(i - 1) % 6]//X/none}
    for o in $order; do
        case $o in
        cnm)
            from=$(shim_lines)
            timed run_cnm dk run --rm --network hdb-cnm "$IMG" true
            read -r s n < <(shim_ms "$from")
            shim_run=$((shim_run + s)) calls_run=$((calls_run + n))
            ;;
        br) timed run_br dk run --rm --network hdb-br "$IMG" true ;;
        none) timed run_none dk run --rm --network none "$IMG" true ;;
        esac
    done
done
dk network rm hdb-cnm hdb-br >"$WORK/out" 2>&1 || die "network rm of the run networks"

# Network create and rm. One untimed cycle each first (plugin handle, the shim's first records).
create_cnm hdb-wc >"$WORK/out" 2>&1 || die "network create through the shim"
dk network rm hdb-wc >"$WORK/out" 2>&1 || die "network rm through the shim"
create_br hdb-wb >"$WORK/out" 2>&1 || die "network create with the bridge driver"
dk network rm hdb-wb >"$WORK/out" 2>&1 || die "network rm with the bridge driver"
create_noop hdb-wn >"$WORK/out" 2>&1 || die "network create with the no-op driver"
dk network rm hdb-wn >"$WORK/out" 2>&1 || die "network rm with the no-op driver"
shim_mk=0 shim_rm=0 calls_mk=0 calls_rm=0
# The four of a round in the rows of a balanced Latin square, in turn: over 4 rounds each goes
# first, second, third and last once, and follows each of the others once.
orders4=("cnm br cli noop" "br noop cnm cli" "noop cli br cnm" "cli cnm noop br")
for i in $(seq "$reps"); do
    order=${orders4[(i - 1) % 4]}
    for o in $order; do
        case $o in
        cnm)
            from=$(shim_lines)
            timed mk_cnm create_cnm "hdb-c$i"
            read -r s n < <(shim_ms "$from")
            shim_mk=$((shim_mk + s)) calls_mk=$((calls_mk + n))
            from=$(shim_lines)
            timed rm_cnm dk network rm "hdb-c$i"
            read -r s n < <(shim_ms "$from")
            shim_rm=$((shim_rm + s)) calls_rm=$((calls_rm + n))
            ;;
        br)
            timed mk_br create_br "hdb-b$i"
            timed rm_br dk network rm "hdb-b$i"
            ;;
        noop)
            timed mk_noop create_noop "hdb-n$i"
            timed rm_noop dk network rm "hdb-n$i"
            ;;
        cli) timed cli dk network inspect none ;;
        esac
    done
done

# CNM_BENCH_TRACE=DIR: one more run, create and rm through the shim with the shim under strace -f -T -tt.
traced() { # traced <pid> <file> cmd…
    local st
    strace -f -T -tt -p "$1" -o "$2" 2>/dev/null &
    st=$!
    PIDS+=("$st")
    for _ in $(seq 50); do grep -q 'TracerPid:[[:space:]]*[1-9]' "/proc/$1/status" 2>/dev/null && break; sleep 0.05; done
    shift 2
    "$@" >"$WORK/out" 2>&1 || die "failed under strace: $*"
    sleep 0.2
    kill -INT "$st" 2>/dev/null || true
    wait "$st" 2>/dev/null || true
}
if [ -n "${CNM_BENCH_TRACE:-}" ]; then
    mkdir -p "$CNM_BENCH_TRACE"
    tdir=$(realpath "$CNM_BENCH_TRACE")
    create_cnm hdb-t >"$WORK/out" 2>&1 || die "network create for the trace"
    traced "$SHIM_PID" "$tdir/docker-shim-run.txt" dk run --rm --network hdb-t "$IMG" true
    dk network rm hdb-t >"$WORK/out" 2>&1 || die "network rm for the trace"
    traced "$SHIM_PID" "$tdir/docker-shim-create.txt" create_cnm hdb-t
    traced "$SHIM_PID" "$tdir/docker-shim-rm.txt" dk network rm hdb-t
    # dockerd itself (every thread) around the same commands with each driver, for its netlink calls
    traced "$DOCKER_PID" "$tdir/docker-dockerd-create-cnm.txt" create_cnm hdb-t
    traced "$DOCKER_PID" "$tdir/docker-dockerd-rm-cnm.txt" dk network rm hdb-t
    traced "$DOCKER_PID" "$tdir/docker-dockerd-create-bridge.txt" create_br hdb-tb
    traced "$DOCKER_PID" "$tdir/docker-dockerd-rm-bridge.txt" dk network rm hdb-tb
    traced "$DOCKER_PID" "$tdir/docker-dockerd-create-noop.txt" create_noop hdb-tn
    traced "$DOCKER_PID" "$tdir/docker-dockerd-rm-noop.txt" dk network rm hdb-tn
fi

per() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.2f", s / n }'; }
# stats_of <array>: its median in ms
stats_of() { local -n v=$1; stats "${v[@]}" | cut -d' ' -f1; }
# noop_line <noop-array> <cnm-array> <bridge-array>: the no-op remote driver beside the two
noop_line() {
    local n
    n=$(stats_of "$1")
    printf '%-22s floor of any remote driver: a no-op one %.2f ms, no-op/bridge %.2fx (paired %.2fx); cnm/no-op %.2fx (paired %.2fx)\n' "" \
        "$n" "$(ratio "$n" "$(stats_of "$3")")" "$(paired "$1" "$3")" "$(ratio "$(stats_of "$2")" "$n")" "$(paired "$2" "$1")"
}
echo "docker $(dk version --format '{{.Server.Version}}') (storage $DOCKER_STORAGE_DRIVER): cnm-shim (driver $P) vs Docker's bridge driver, one dockerd, $reps interleaved rounds (orders balanced), image $IMG"
line "run --rm $IMG true" cnm run_cnm bridge run_br 1.1
printf '%-22s none %8.2f ms (a container without a network, same rounds): over it cnm %.2f ms, bridge %.2f ms\n' "" "$(med "${run_none[@]}")" \
    "$(awk -v a="$(med "${run_cnm[@]}")" -v b="$(med "${run_none[@]}")" 'BEGIN { print a - b }')" \
    "$(awk -v a="$(med "${run_br[@]}")" -v b="$(med "${run_none[@]}")" 'BEGIN { print a - b }')"
printf '%-22s shim handlers %s ms per run (%s calls; whole ms as the shim logs them)\n' "" "$(per "$shim_run" "$reps")" "$(per "$calls_run" "$reps")"
line "network create" cnm mk_cnm bridge mk_br 1.1
printf '%-22s shim handlers %s ms per create (%s calls)\n' "" "$(per "$shim_mk" "$reps")" "$(per "$calls_mk" "$reps")"
noop_line mk_noop mk_cnm mk_br
line "network rm" cnm rm_cnm bridge rm_br 1.1
printf '%-22s shim handlers %s ms per rm (%s calls)\n' "" "$(per "$shim_rm" "$reps")" "$(per "$calls_rm" "$reps")"
noop_line rm_noop rm_cnm rm_br
printf '%-22s floor: a CLI round trip (docker network inspect) %.2f ms\n' "" "$(med "${cli[@]}")"
echo "rounds took $((SECONDS - t_all)) s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "${CNM_BENCH_TRACE:-}" ] || echo "strace -f -T -tt of the shim during one run, create, rm: $tdir/docker-shim-{run,create,rm}.txt; of dockerd: $tdir/docker-dockerd-{create,rm}-{cnm,bridge,noop}.txt"
