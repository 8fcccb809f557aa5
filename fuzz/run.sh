#!/bin/sh
# Run every fuzz target for SECONDS seconds each (default 30). Installs cargo-fuzz if missing.
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no second toolchain has to be installed.
set -eu
SECONDS_EACH="${1:-30}"
cd "$(dirname "$0")"
if ! cargo fuzz --help >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Build every target in one cargo invocation first: `cargo fuzz run T` alone builds only T's
# binary, one after the other with one core idle while each links; built together, cargo
# compiles and links them side by side and each run below starts at once.
cargo fuzz build
for t in manifest certificate minisign package frame policy grant index http kv audit; do
    echo "== fuzz target $t for ${SECONDS_EACH}s"
    mkdir -p "corpus/$t"
    cargo fuzz run "$t" "corpus/$t" seeds/"$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048
done
