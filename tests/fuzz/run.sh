#!/usr/bin/env bash
# Builds the libFuzzer target with clang, ASan and UBSan, and runs it for the given time.
#   tests/fuzz/run.sh [seconds, default 600]
# Findings (crash-*, leak-*, timeout-*) land in build-fuzz/findings/; a finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++ CC=clang meson setup build-fuzz -Dfuzz=true -Db_lto=false -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized -Dcpp_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C build-fuzz tests/fuzz/parse-fuzz >/dev/null
mkdir -p build-fuzz/findings build-fuzz/corpus
cp -n tests/fuzz/corpus/* build-fuzz/corpus/ 2>/dev/null || true
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# -fork keeps going after an out-of-memory input; each finding still fails the run.
build-fuzz/tests/fuzz/parse-fuzz -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix=build-fuzz/findings/ -print_final_stats=1 build-fuzz/corpus 2>&1 | tail -25
if ls build-fuzz/findings/* >/dev/null 2>&1; then
    echo "fuzz: findings in build-fuzz/findings" >&2
    exit 1
fi
echo "fuzz: ${seconds}s, no finding"
