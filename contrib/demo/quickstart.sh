#!/usr/bin/env bash
# quickstart.sh: from a fresh checkout to a working demo in one command:
# install missing build/test packages (apt), build mailsync into build/, run
# the demo (contrib/demo/run-demo.sh). Set BUILD_DIR to build elsewhere.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
build=${BUILD_DIR:-build}
.ci/install-deps
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"
case "$build" in /*) bin=$build/mailsync ;; *) bin=$repo/$build/mailsync ;; esac
MAILSYNC_BIN="$bin" exec contrib/demo/run-demo.sh "$@"
