#!/usr/bin/env bash
# VM test tier: the plugins against a kernel that has what the host kernel may lack (ipvlan,
# 802.1Q, dummy, bridge VLAN filtering). Boots Debian's own kernel under qemu (TCG, no NIC:
# `-nic none`, nothing leaves the VM) with a busybox initramfs holding iproute2, jq, the
# modules, our plugins, the reference plugins and tests/vm/guest.sh, which reports over the
# serial console: one `TEST <name>: ok|FAIL …` line per test and a final `HARNESS: PASS|FAIL`.
#
# Env: BUILD        meson build dir (default /work/main/build); plugins from $BUILD/plugins
#      CNM_VM_CACHE kernel .deb, PVH vmlinux and module closure (default /var/cache/cnm-vm)
#      CNM_VM_TIMEOUT  qemu wall-clock limit in seconds (default 300)
#      CNM_VM_IPVLAN   the ipvlan binary to test as ours (default $BUILD/plugins/ipvlan if built;
#                      `reference` runs the ipvlan tests against the reference plugin)
#      CNM_VM_KEEP=1   keep the work dir (initramfs, console log) for debugging
# The recipe and its measurements: ../shared/reference/kernel-vm.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-/work/main/build}
CACHE=${CNM_VM_CACHE:-/var/cache/cnm-vm}
TIMEOUT=${CNM_VM_TIMEOUT:-300}
REF=/usr/lib/cni
MODULES=(ipvlan macvlan 8021q dummy veth bridge vxlan)
T0=$(date +%s.%N)

log() { echo "vm: [$(elapsed)s] $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt, cache dir)"
[ -d "$BUILD/plugins" ] || die "no $BUILD/plugins: build first (ninja -C $BUILD)"

WORK=$(mktemp -d /tmp/cnm-vm-XXXXXX)
QPID=
cleanup() {
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    if [ "${CNM_VM_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- packages --------------------------------------------------------------------------------
APT_UPDATED=0
apt_update() { [ "$APT_UPDATED" = 1 ] || { apt-get update -qq; APT_UPDATED=1; }; }
need=(qemu-system-x86 xz-utils busybox-static cpio jq iproute2 containernetworking-plugins)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_update
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- kernel: resolve, download once ----------------------------------------------------------
mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.lock"   # one run at a time fills the cache
flock 9
kpkg_of() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-amd64$/ { print $2; exit }'; }
KPKG=$(kpkg_of || true)
if [ -z "$KPKG" ]; then apt_update; KPKG=$(kpkg_of || true); fi
if [ -z "$KPKG" ]; then
    # No package lists (offline): fall back to the newest cached kernel.
    deb=$(ls -1 "$CACHE"/debs/linux-image-*-amd64_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$deb" ] || die "cannot resolve linux-image-amd64's kernel package and nothing is cached"
    KPKG=$(basename "$deb" | cut -d_ -f1)
fi
KVER=${KPKG#linux-image-}
DEB=$(ls -1 "$CACHE/debs/${KPKG}"_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$DEB" ]; then
    log "downloading $KPKG"
    mkdir -p "$WORK/dl"   # downloaded aside, moved into the cache only when complete
    if ! (cd "$WORK/dl" && apt-get download -qq "$KPKG" 2>"$WORK/apt.err"); then
        APT_UPDATED=0; apt_update   # stale lists: the archive moved on
        (cd "$WORK/dl" && apt-get download -qq "$KPKG") || { cat "$WORK/apt.err" >&2; die "apt-get download $KPKG failed"; }
    fi
    mv "$WORK/dl/${KPKG}"_*.deb "$CACHE/debs/"
    DEB=$(ls -1 "$CACHE/debs/${KPKG}"_*.deb | sort -V | tail -n 1)
    # Only the current kernel is kept.
    find "$CACHE/debs" -name 'linux-image-*.deb' ! -name "$(basename "$DEB")" -delete
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name '*-amd64' ! -name "$KVER" -exec rm -rf {} +
fi

# --- kernel: PVH vmlinux and module closure, extracted once ----------------------------------
KC="$CACHE/$KVER"
VMLINUX="$KC/vmlinux"
MODROOT="$KC/modroot"   # lib/modules/$KVER/{kernel/…, modules.dep}
want="${MODULES[*]}"
if [ ! -s "$VMLINUX" ] || [ ! -f "$KC/modules.want" ] || [ "$(cat "$KC/modules.want")" != "$want" ]; then
    log "extracting $(basename "$DEB")"
    rm -rf "$KC"; mkdir -p "$KC"
    KROOT="$WORK/kroot"; mkdir -p "$KROOT"
    # Only the kernel image and the module directories a network module can depend on.
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$KROOT" --wildcards \
        './boot/vmlinuz-*' './lib/modules/*/modules.builtin*' './lib/modules/*/modules.order' \
        './lib/modules/*/kernel/net/*' './lib/modules/*/kernel/drivers/net/*' \
        './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*'
    [ -d "$KROOT/lib/modules/$KVER" ] || die "$DEB has no lib/modules/$KVER"
    bz="$KROOT/boot/vmlinuz-$KVER"
    # Debian's bzImage is xz-compressed; its ELF vmlinux boots through the PVH entry point and
    # saves the 3–4 s of decompression under TCG on every boot.
    found=0
    for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1); do
        # SIGPIPE from tail is expected: check the output, not the pipe status.
        tail -c +$((off + 1)) "$bz" | xz -dc --single-stream >"$VMLINUX.tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then found=1; break; fi
    done
    [ "$found" = 1 ] || die "no xz-compressed ELF vmlinux in $bz"
    mv "$VMLINUX.tmp" "$VMLINUX"
    # The .deb ships no modules.dep (depmod runs in postinst); busybox depmod makes one.
    busybox depmod -b "$KROOT" "$KVER"
    declare -A DEPS=() PATHOF=() SEEN=()
    while IFS=: read -r m deps; do
        n=${m##*/}; n=${n%%.ko*}
        PATHOF[$n]=$m
        d=""; for x in $deps; do x=${x##*/}; d+=" ${x%%.ko*}"; done
        DEPS[$n]=$d
    done <"$KROOT/lib/modules/$KVER/modules.dep"
    queue=("${MODULES[@]}")
    while [ ${#queue[@]} -gt 0 ]; do
        n=${queue[0]}; queue=("${queue[@]:1}")
        [ -z "${SEEN[$n]:-}" ] || continue
        [ -n "${PATHOF[$n]:-}" ] || die "module $n not in $KPKG"
        SEEN[$n]=1
        # shellcheck disable=SC2206
        queue+=(${DEPS[$n]})
    done
    for n in "${!SEEN[@]}"; do
        p=${PATHOF[$n]}
        mkdir -p "$MODROOT/lib/modules/$KVER/$(dirname "$p")"
        src="$KROOT/lib/modules/$KVER/$p"
        case "$p" in
            *.ko.xz) xz -dc "$src" >"$MODROOT/lib/modules/$KVER/${p%.xz}" ;;
            *.ko.zst) zstd -qdc "$src" >"$MODROOT/lib/modules/$KVER/${p%.zst}" ;;
            *) cp "$src" "$MODROOT/lib/modules/$KVER/$p" ;;
        esac
    done
    cp "$KROOT/lib/modules/$KVER"/modules.builtin* "$KROOT/lib/modules/$KVER/modules.order" "$MODROOT/lib/modules/$KVER/" 2>/dev/null || true
    busybox depmod -b "$MODROOT" "$KVER"
    echo "$want" >"$KC/modules.want"
    rm -rf "$KROOT"
    log "cached vmlinux and ${#SEEN[@]} modules ($(printf '%s\n' "${!SEEN[@]}" | sort | xargs))"
fi

exec 9>&-

# --- initramfs -------------------------------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,var,opt/cnm/bin,opt/ref/bin,lib}
ln -s /run "$R/var/run"
cp -a "$MODROOT/lib/modules" "$R/lib/"
declare -A LIBS=()
add_bin() { # <src> <dest-in-root>: the binary and every shared library ldd names
    local src=$1 dst=$2 lib
    cp -L "$src" "$R$dst"
    for lib in $(ldd "$src" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
        [ -z "${LIBS[$lib]:-}" ] || continue
        LIBS[$lib]=1
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
}
add_bin /sbin/ip /sbin/ip
add_bin /sbin/bridge /sbin/bridge
add_bin "$(command -v jq)" /usr/bin/jq
for p in bridge macvlan ipam; do
    [ -x "$BUILD/plugins/$p" ] || die "$BUILD/plugins/$p missing: build first"
    add_bin "$BUILD/plugins/$p" "/opt/cnm/bin/$p"
done
# cnm-shim, driven in the guest the way Docker drives it (its VLAN parents need 802.1Q).
if [ -x "$BUILD/cnm-shim/cnm-shim" ]; then add_bin "$BUILD/cnm-shim/cnm-shim" /opt/cnm/bin/cnm-shim; fi
# ipvlan: ours once it is built (or CNM_VM_IPVLAN=<binary>), else the guest tests run the
# reference ipvlan with host-local, which keeps the tests themselves checked.
# CNM_VM_IPVLAN=reference forces the reference.
IPVLAN_BIN=${CNM_VM_IPVLAN:-$BUILD/plugins/ipvlan}
for p in ipvlan macvlan host-local bridge; do
    [ -x "$REF/$p" ] || die "reference plugin $REF/$p missing (containernetworking-plugins)"
    add_bin "$REF/$p" "/opt/ref/bin/$p"
done
BB=/bin/busybox
ldd "$BB" >/dev/null 2>&1 && die "$BB is dynamically linked: busybox-static is needed"
cp "$BB" "$R/bin/busybox"
if [ "$IPVLAN_BIN" != reference ] && [ -x "$IPVLAN_BIN" ]; then
    IPVLAN_IMPL=ours
    add_bin "$IPVLAN_BIN" /opt/cnm/bin/ipvlan
else
    IPVLAN_IMPL=reference
fi
cat >"$R/etc/cnm-vm.conf" <<EOF
IPVLAN_IMPL=$IPVLAN_IMPL
KVER=$KVER
EOF
cp "$HERE/guest.sh" "$R/guest.sh"
cat >"$R/init" <<EOF
#!/bin/busybox sh
# Applet links (existing files, /sbin/ip and /sbin/bridge, are kept): one static exec in the
# guest instead of ~400 on the host.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 1 >/proc/sys/kernel/printk
read up _ </proc/uptime
echo "GUEST: kernel \$(uname -r), /init at \${up}s"
# numdummies=0: the tests create dummy0 themselves.
for m in ${MODULES[*]}; do modprobe \$m \$([ \$m = dummy ] && echo numdummies=0) || echo "GUEST: modprobe \$m failed"; done
sh /guest.sh
rc=\$?
read up _ </proc/uptime
if [ \$rc -eq 0 ]; then echo "HARNESS: PASS (\${up}s)"; else echo "HARNESS: FAIL (guest.sh exit \$rc, \${up}s)"; fi
poweroff -f
EOF
chmod +x "$R/init" "$R/guest.sh"
(cd "$R" && find . | cpio -o -H newc --quiet) >"$WORK/initramfs.cpio"
log "initramfs $(du -m "$WORK/initramfs.cpio" | cut -f1) MB ready; ipvlan plugin under test: $IPVLAN_IMPL"

# --- boot ------------------------------------------------------------------------------------
LOG="$WORK/console.log"
T1=$(date +%s.%N)
timeout "$TIMEOUT" qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 \
    -nographic -no-reboot -nodefaults -no-user-config -serial stdio -nic none \
    -kernel "$VMLINUX" -initrd "$WORK/initramfs.cpio" \
    -append 'console=ttyS0 panic=-1 quiet' </dev/null >"$LOG" 2>&1 &
QPID=$!
set +e
wait "$QPID"
qrc=$?
set -e
QPID=
QSECS=$(awk -v a="$T1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
tr -d '\r' <"$LOG" >"$LOG.txt"

# --- results ---------------------------------------------------------------------------------
grep -E '^(GUEST|TEST|HARNESS)|^  \[[^]]*\] note:' "$LOG.txt" || true
n_ok=$(grep -c '^TEST [^:]*: ok' "$LOG.txt" || true)
n_fail=$(grep -c '^TEST [^:]*: FAIL' "$LOG.txt" || true)
harness=$(grep -m1 '^HARNESS: ' "$LOG.txt" | awk '{ print $2 }' || true)
status=PASS
why=()
[ "$qrc" -eq 0 ] || { status=FAIL; if [ "$qrc" -eq 124 ]; then why+=("qemu timed out after ${TIMEOUT}s"); else why+=("qemu exit $qrc"); fi; }
[ "$n_fail" -eq 0 ] || { status=FAIL; why+=("$n_fail test(s) failed"); }
[ "$((n_ok + n_fail))" -gt 0 ] || { status=FAIL; why+=("no test ran"); }
[ "$harness" = PASS ] || { status=FAIL; why+=("harness: ${harness:-no HARNESS line}"); }
if [ "$status" = FAIL ]; then
    echo "---- guest console (last 80 lines) ----"
    tail -n 80 "$LOG.txt"
    echo "----"
fi
why_s=$(printf '; %s' "${why[@]}")
echo "vm: $status — $n_ok ok, $n_fail failed; ipvlan: $IPVLAN_IMPL; kernel $KVER; qemu ${QSECS} s, total $(elapsed) s${why:+$why_s}"
[ "$status" = PASS ]
