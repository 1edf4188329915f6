#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/fuzz/run.sh: run every libFuzzer target of a MAILSYNC_FUZZ build for
# a bounded time, starting from its seed corpus (tests/fuzz/corpus/<target>).
#
#   tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#
# New inputs go to BUILD_DIR/fuzz-work/<target> (the seed corpus in the
# tree is only read); a crash, leak, timeout or sanitizer report is saved
# in BUILD_DIR/fuzz-artifacts/<target>/ and makes the script exit 1 after
# all targets ran. Default: 12 s per target. Used by .ci/run (stage "fuzz").
# FUZZ_JOBS: targets run at once (default: the number of CPUs).
#
# Each target first replays its seeds once with leak detection on; then it
# fuzzes. fuzz_imap_fetch fuzzes with leak detection off unless FUZZ_LEAKS=1:
# libetpan 1.9.4's parser leaks on some malformed responses (its error
# paths, not our code; the known ones are suppressed in fuzz_imap_fetch.c),
# and an unknown one would make CI fail at random. Our own paths stay
# leak-checked by the replay (and by the ASan integration tests).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-12}
shift $(($# >= 2 ? 2 : 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for src in "$here"/fuzz_*.c; do
        targets+=("$(basename "$src" .c)")
    done
fi

# The fuzzers' own settings; not the ones the ASan test stage exports.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
unset LSAN_OPTIONS

# fuzz_one TARGET: replay the seeds, then fuzz. Prints its report (to the
# caller's stdout, which is a file when run in parallel); exit 1 on a
# finding, 2 when the binary is missing.
fuzz_one() {
    local t=$1
    local bin="$build/tests/fuzz/$t"
    if [ ! -x "$bin" ]; then
        echo "fuzz: $t: $bin not built"
        return 2
    fi
    local work="$build/fuzz-work/$t" art="$build/fuzz-artifacts/$t"
    mkdir -p "$work" "$art"
    local seeds=()
    [ -d "$here/corpus/$t" ] && seeds=("$here/corpus/$t")
    local extra=() asan=$ASAN_OPTIONS
    if [ "$t" = fuzz_imap_fetch ] && [ "${FUZZ_LEAKS:-0}" != 1 ]; then
        extra=(-detect_leaks=0) asan="detect_leaks=0:allocator_may_return_null=0"
    fi
    [ -f "$here/$t.dict" ] && extra+=(-dict="$here/$t.dict")
    echo "=== fuzz: $t for ${secs}s"
    if [ ${#seeds[@]} -ne 0 ] && ! "$bin" -runs=0 -timeout=10 -artifact_prefix="$art/" "${seeds[@]}" \
        >"$art/replay.log" 2>&1; then
        echo "!!! fuzz: $t: a seed input fails; last lines of $art/replay.log:"
        tail -n 40 "$art/replay.log"
        return 3
    fi
    # -timeout: one input taking 10 s is a finding (a hang on hostile input).
    if ASAN_OPTIONS=$asan "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$art/" "${extra[@]}" "$work" "${seeds[@]}" >"$art/log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done' "$art/log" | tr '\n' ' '
        echo
    else
        echo "!!! fuzz: $t FAILED; last lines of $art/log:"
        tail -n 40 "$art/log"
        ls -l "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* 2>/dev/null
        return 1
    fi
}

# FUZZ_JOBS targets at a time (default: the number of CPUs): each fuzzer is
# one single-threaded process, so two on two cores each still get a whole
# core for their seconds, and the stage takes half the time. Reports are
# printed in target order once all ran.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    (fuzz_one "$t" >"$out/$t.report" 2>&1; echo $? >"$out/$t.rc") &
    running=$((running + 1))
done
wait

failed=()
for t in "${targets[@]}"; do
    cat "$out/$t.report"
    case "$(cat "$out/$t.rc" 2>/dev/null)" in
        0) ;;
        2) failed+=("$t (not built)") ;;
        3) failed+=("$t (seeds)") ;;
        *) failed+=("$t") ;;
    esac
done

if [ ${#failed[@]} -ne 0 ]; then
    printf 'fuzz: %d target(s) failed: %s\n' ${#failed[@]} "${failed[*]}"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean"
