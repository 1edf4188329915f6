#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# quickstart.sh: from a fresh checkout to a working demo in one command:
# install the missing packages the build and the demo need (apt; the
# test suite's extra packages are .ci/install-deps' job, run by .ci/run), build mailsync into build/, run
# the demo (contrib/demo/run-demo.sh). Set BUILD_DIR to build elsewhere.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
build=${BUILD_DIR:-build}
.ci/install-deps --demo
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAILSYNC_TESTS=OFF
cmake --build "$build" -j"$(nproc)"
case "$build" in /*) bin=$build/mailsync ;; *) bin=$repo/$build/mailsync ;; esac
MAILSYNC_BIN="$bin" exec contrib/demo/run-demo.sh "$@"
