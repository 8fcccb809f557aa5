# shellcheck shell=bash disable=SC2034 # sets STOCKADE, BATTERY, PROBE for run-matrix.sh
# --matrix: build the three binaries of the matrix from this checkout's cargo
# workspace and find them, so that CI needs no knowledge of target paths.
# cargo's JSON messages name every built executable, and the build script
# of stockade-sandbox-tests reports its OUT_DIR, where the static probe binary
# is built; a fresh workspace build (as CI's earlier step leaves it) makes
# this a no-op compile.

build_workspace_binaries() {
	local repo=$HERE/../.. json
	command -v cargo >/dev/null || die "$EXIT_UNAVAILABLE" "--matrix needs cargo to build the binaries"
	[ -f "$repo/Cargo.toml" ] || die "$EXIT_UNAVAILABLE" "--matrix: no cargo workspace at $repo"
	local args=(build --locked -p stockade-runtime -p stockade-sandbox-tests --bins
		--message-format=json-render-diagnostics)
	[ "$PROFILE" = release ] && args+=(--release)
	say "building: cargo ${args[*]}"
	json=$(cd "$repo" && cargo "${args[@]}") || die "$EXIT_BUILD" "cargo build of the matrix binaries failed"
	STOCKADE=$(printf '%s\n' "$json" | grep '"reason":"compiler-artifact"' |
		grep -o '"executable":"[^"]*/stockade"' | tail -1 | cut -d'"' -f4)
	BATTERY=$(printf '%s\n' "$json" | grep '"reason":"compiler-artifact"' |
		grep -o '"executable":"[^"]*/stockade-battery"' | tail -1 | cut -d'"' -f4)
	local out
	out=$(printf '%s\n' "$json" | grep '"reason":"build-script-executed"' | grep 'stockade-sandbox-tests' |
		grep -o '"out_dir":"[^"]*"' | tail -1 | cut -d'"' -f4)
	PROBE=${out:+$out/stockade-probe}
	[ -x "$STOCKADE" ] || die "$EXIT_BUILD" "--matrix: cargo built no 'stockade' binary"
	[ -x "$BATTERY" ] || die "$EXIT_BUILD" "--matrix: cargo built no 'stockade-battery' binary (is the battery in this workspace?)"
	[ -x "$PROBE" ] || die "$EXIT_BUILD" "--matrix: no stockade-probe in the build script's OUT_DIR (${out:-not reported})"
	say "matrix binaries: $STOCKADE, $BATTERY, $PROBE"
}
