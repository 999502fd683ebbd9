#!/usr/bin/env bash
# The whole test suite: install what is needed, build with -Werror, run a short fuzzing smoke
# test, then every tier through meson (unit: no root; e2e: the built binaries, real netns, the
# reference plugins). Run as root. The last lines are meson's summary.
#   FUZZ_SECONDS=600 scripts/test.sh   for the long fuzzing run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ "$(id -u)" -eq 0 ] || { echo "run as root: the e2e tier creates network namespaces" >&2; exit 1; }
if [ ! -f build/build.ninja ]; then
    meson setup build -Dwerror=true >/dev/null
else
    meson configure build -Dwerror=true
fi
ninja -C build
tests/fuzz/run.sh "${FUZZ_SECONDS:-60}"
meson test -C build --print-errorlogs --num-processes 1
