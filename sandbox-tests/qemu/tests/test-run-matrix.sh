#!/bin/bash
# Tests of run-matrix.sh itself: every way a VM run can end must map to the
# documented exit status with a clear message, arguments must reach the guest
# intact, and the matrix mode must hand the battery runner the right command
# line. Each case boots the real VM (about 15-25 s each under TCG).
#
# Usage: tests/test-run-matrix.sh [CASE...]   (default: all cases)
# Last line: "test-run-matrix: N passed, N failed"; exit 1 if any failed.
#
# The boots run VM_JOBS at a time (default 2). A TCG guest keeps about three
# quarters of one host core busy (measured: 12 s of CPU for a 16 s boot), so
# on CI's 2 cores two boots side by side take ~25 s where one after the other
# take ~32 s; each boot is its own run-matrix.sh with its own work dir and
# console log, and every case's verdict and output are printed whole, in the
# order the cases are listed, as they were when they ran one at a time.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$HERE/run-matrix.sh
JOBS=${VM_JOBS:-2}
case $JOBS in
'' | *[!0-9]* | 0) echo "test-run-matrix: VM_JOBS wants a positive integer, got '$JOBS'" >&2; exit 64 ;;
esac
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The cases' names, in the order they were started; the first not yet printed.
started=()
printed=0

# run_case NAME WANT-STATUS WANT-OUTPUT-REGEX RUN-MATRIX-ARGS...
# Runs the harness quietly; checks its status and that the regex matches the
# console log plus the harness's own messages. Prints its verdict (and on a
# failure the tail of the output) and leaves pass or fail in $TMP/NAME.verdict.
run_case() {
	local name=$1 want=$2 regex=$3 out=$TMP/$1.out st=0
	shift 3
	local t0=$SECONDS
	"$RUN" --quiet --log "$TMP/$name.log" "$@" >"$out" 2>&1 || st=$?
	[ -f "$TMP/$name.log" ] && tr -d '\r' <"$TMP/$name.log" >>"$out"
	if [ "$st" != "$want" ]; then
		echo "FAIL $name: status $st, want $want"
		sed 's/^/    /' "$out" | tail -15
		echo fail >"$TMP/$name.verdict"
	elif ! grep -Eq -- "$regex" "$out"; then
		echo "FAIL $name: output does not match /$regex/"
		sed 's/^/    /' "$out" | tail -15
		echo fail >"$TMP/$name.verdict"
	else
		echo "PASS $name ($((SECONDS - t0))s)"
		echo pass >"$TMP/$name.verdict"
	fi
}

# Prints, in start order, the report of every case that has finished and
# whose predecessors have all been printed.
print_finished() {
	while [ "$printed" -lt "${#started[@]}" ] && [ -f "$TMP/${started[$printed]}.verdict" ]; do
		cat "$TMP/${started[$printed]}.report"
		printed=$((printed + 1))
	done
}

# expect NAME WANT-STATUS WANT-OUTPUT-REGEX RUN-MATRIX-ARGS...
# Starts run_case in the background once fewer than $JOBS cases run.
expect() {
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n
		print_finished
	done
	started+=("$1")
	run_case "$@" >"$TMP/$1.report" 2>&1 &
}

case_usage() {
	expect usage-nothing 64 'nothing to run' --
	expect usage-bad-add 64 'HOSTPATH:/GUEST/PATH' --add relative -- true
	expect usage-partial-matrix 64 'all three' --stockade /usr/bin/true -- true
	expect usage-bad-timeout 64 'positive integer' --timeout 5s -- true
	expect usage-missing-file 64 'no such host file' --add /nonexistent:/x -- true
	expect usage-matrix-and-paths 64 'builds its own binaries' --matrix --stockade /usr/bin/true
	expect usage-release-alone 64 'only applies to --matrix' --release --selfcheck
	expect usage-bad-layout 64 'root or scope' --cgroup-layout flat --selfcheck
	expect usage-systemd-alone 64 'needs --matrix or --stockade' --systemd
	expect usage-systemd-and-selfcheck 64 'exclude each other' --selfcheck --systemd
}

case_status() {
	# The payload's status comes back, its output is on the console, and
	# quoting (spaces, single quotes) survives the trip into the guest.
	# shellcheck disable=SC2016 # expanded by the guest's shell
	expect status-passthrough 7 "^args=3 \\[a b\\] \\[c'd\\]" \
		-- sh -c 'echo "args=$# [$2] [$3]"; exit 7' sh x 'a b' "c'd"
}

case_env() {
	# shellcheck disable=SC2016 # expanded by the guest's shell
	expect env-forwarded 0 '^FOO=bar baz CI=true$' --env 'FOO=bar baz' \
		-- sh -c 'echo "FOO=$FOO CI=$CI"; [ -z "${STOCKADE_TEST_CANARY:-}" ]'
}

case_timeout() {
	expect timeout 124 'timeout: the VM did not finish within 8s' --timeout 8 -- sleep 600
}

case_panic() {
	expect panic 120 'kernel panic in the guest: .*sysrq triggered crash' \
		-- sh -c 'echo c >/proc/sysrq-trigger'
}

case_boot_failure() {
	# The payload powers the machine off itself: no status line is printed.
	expect no-status 121 'boot failure: the VM stopped .* without reporting' -- poweroff -f
}

case_matrix_standins() {
	# Stand-ins for the real binaries: a dynamically linked "stockade" and
	# "probe" (copies of host coreutils, which need their libraries) and a
	# battery runner script that checks the command lines it is given: first
	# the battery run, then the posture check (which fails when the guest
	# has POSTURE_FAILS=1).
	cat >"$TMP/battery" <<'B'
#!/bin/sh
/usr/local/bin/stockade --version >/dev/null || { echo "stockade stand-in does not run"; exit 98; }
/usr/local/bin/stockade-probe >/dev/null || { echo "probe stand-in does not run"; exit 97; }
if [ "$1" = --posture ]; then
	[ "$*" = "--posture --stockade /usr/local/bin/stockade --probe /usr/local/bin/stockade-probe --expect-uid 4242" ] ||
		{ echo "bad posture args: $*"; exit 99; }
	echo "posture: stand-in"
	[ "${POSTURE_FAILS:-0}" = 0 ]
	exit
fi
[ "$*" = "--stockade /usr/local/bin/stockade --probe /usr/local/bin/stockade-probe --mem-mb 512 --fork-max 256 --fsize-mb 64 --inode-max 4096 --expect-pids 64 --only a b" ] ||
	{ echo "bad battery args: $*"; exit 99; }
printf '%-20s %-8s %s\n' probe native sandboxed standin-a ok blocked standin-b ok blocked
echo "2 passed, 0 failed"
B
	chmod +x "$TMP/battery"
	local common=(--stockade /usr/bin/env --battery "$TMP/battery" --probe /usr/bin/true
		--battery-arg --only --battery-arg 'a b' --posture-arg --expect-uid --posture-arg 4242 --no-package-run)
	# The closing line adds the battery's 2, the posture check's 1 and the
	# guest self-check's (4x) passes.
	expect matrix-standins 0 '^qemu-6\.1\.[^:]*: [1-9][0-9]+ passed, 0 failed$' "${common[@]}"
	expect matrix-posture-fails 1 '^qemu-6\.1\.[^:]*: [1-9][0-9]+ passed, 1 failed$' "${common[@]}" --env POSTURE_FAILS=1
}

case_selfcheck() {
	expect selfcheck 0 'selfcheck: [0-9]+ passed, 0 failed' --selfcheck
}

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(usage status env timeout panic boot_failure matrix_standins selfcheck)
# The env case checks that CI is forwarded into the guest and that nothing
# else from the host environment is.
CI=true STOCKADE_TEST_CANARY=leaked
export CI STOCKADE_TEST_CANARY
for c in "${cases[@]}"; do "case_$c"; done
wait
print_finished
# A case whose run_case was killed before its verdict: its report so far, then
# a failure.
while [ "$printed" -lt "${#started[@]}" ]; do
	cat "$TMP/${started[$printed]}.report"
	[ -f "$TMP/${started[$printed]}.verdict" ] || echo "FAIL ${started[$printed]}: no verdict"
	printed=$((printed + 1))
done
passed=0
failed=0
for name in "${started[@]}"; do
	if [ "$(cat "$TMP/$name.verdict" 2>/dev/null)" = pass ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "test-run-matrix: $passed passed, $failed failed"
[ "$failed" = 0 ]
