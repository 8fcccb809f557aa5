#!/bin/sh
# Run every fuzz target for SECONDS seconds each (default 30). Installs cargo-fuzz if missing.
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no second toolchain has to be installed.
#   fuzz/run.sh [SECONDS]     build every target, then fuzz each for SECONDS
#   fuzz/run.sh --build-only  only install cargo-fuzz if missing and build every target, exactly as
#                             the run does (scripts/test.sh does this early, in the background)
set -eu
BUILD_ONLY=""
if [ "${1:-}" = "--build-only" ]; then
    BUILD_ONLY=1
    shift
fi
SECONDS_EACH="${1:-30}"
# How many targets fuzz side by side (default 2: CI's machine has 2 cores). Each libFuzzer run
# is single-threaded and -max_total_time is wall time, so on a machine with JOBS idle cores
# every target still gets its SECONDS of one core to itself: what each run checks is unchanged,
# only the runs no longer wait for one another.
JOBS="${FUZZ_JOBS:-2}"
cd "$(dirname "$0")"
if ! cargo fuzz --help >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Build every target in one cargo invocation first: `cargo fuzz run T` alone builds only T's
# binary, one after the other with one core idle while each links; built together, cargo
# compiles and links them side by side and each run below starts at once.
cargo fuzz build
if [ -n "$BUILD_ONLY" ]; then
    exit 0
fi
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
failed=""
running=""
# Waits for the batch in $running, prints each log in order, notes each failure.
finish_batch() {
    for t in $running; do
        if wait "$(cat "$LOGS/$t.pid")"; then status=ok; else status=FAILED; failed="$failed $t"; fi
        echo "== fuzz target $t for ${SECONDS_EACH}s: $status"
        cat "$LOGS/$t.log"
    done
    running=""
}
n=0
for t in manifest certificate minisign package frame policy grant index http kv audit; do
    mkdir -p "corpus/$t"
    cargo fuzz run "$t" "corpus/$t" seeds/"$t" \
        -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 >"$LOGS/$t.log" 2>&1 &
    echo $! >"$LOGS/$t.pid"
    running="$running $t"
    n=$((n + 1))
    if [ "$n" -ge "$JOBS" ]; then
        finish_batch
        n=0
    fi
done
finish_batch
if [ -n "$failed" ]; then
    echo "fuzzing failed:$failed" >&2
    exit 1
fi
