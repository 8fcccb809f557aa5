#!/usr/bin/env bash
# The benchmark harness: Stockade side by side with bare exec, unshare, bwrap, runc and firejail
# and with the physical floor, in one run (issue 8). Needs root (runc, firejail, root-mode
# sandboxes) and the peers: apt-get install bubblewrap runc firejail.
#
#   sandbox-tests/bench/run.sh            release build, full runs, rewrites docs/PERFORMANCE.md
#                                         and docs/perf-*.svg (keep the machine otherwise idle)
#   sandbox-tests/bench/run.sh --quick    debug build, a few runs each, output in a temp dir:
#                                         proves the harness works (CI); the figures mean nothing
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=
[ "${1:-}" = "--quick" ] && quick=1

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ -n "$quick" ]; then
  cargo build -q --locked -p stockade-runtime -p stockade-bench
  profile=debug
  docs=$(mktemp -d /tmp/stockade-bench-docs.XXXXXX)
  trap 'rm -rf "$docs"' EXIT
else
  cargo build -q --locked --release -p stockade-runtime -p stockade-bench
  profile=release
  docs=docs
fi
args=(--stockade "$target_dir/$profile/stockade" --docs "$docs")
[ -n "$quick" ] && args+=(--quick)
# In CI a missing peer is an error, never a silent skip.
[ "${CI:-}" = "true" ] && args+=(--require-peers)
"$target_dir/$profile/stockade-bench" "${args[@]}"
if [ -n "$quick" ]; then
  for f in PERFORMANCE.md perf-launch.svg perf-rtt.svg; do
    [ -s "$docs/$f" ] || { echo "bench: $f was not written" >&2; exit 1; }
  done
  echo "bench: quick run complete (outputs checked, figures not meaningful)"
fi
