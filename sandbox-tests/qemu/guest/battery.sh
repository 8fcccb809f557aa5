#!/bin/sh
# shellcheck shell=dash
# Guest payload of `run-matrix.sh --stockade --battery --probe`: the kernel
# self-check, then the escape battery, then the posture check, then the
# package run (pkgrun.sh: `stockade run` end to end), against the sandbox on
# this kernel.
# /etc/stockade-vm/battery-args and posture-args hold extra arguments (shell
# words written by run-matrix.sh); posture-args holding "skip" skips the
# posture check, /etc/stockade-vm/pkgrun holding "skip" the package run.
#
# The runner prints its table and "N passed, N failed"; this script then
# prints one closing line for the whole kernel: the battery's counts plus the
# self-check's, with the posture check and the package run counted as one
# more test each:
#   qemu-<release>: N passed, N failed
B=/usr/local/bin/stockade-battery
S=/usr/local/bin/stockade
P=/usr/local/bin/stockade-probe
kernel=$(uname -r)
# The self-check first: if the kernel lacks a feature, its FAIL line says
# which, before the battery's symptoms do.
/usr/local/libexec/stockade-vm/selfcheck.sh | tee /tmp/selfcheck.out
sc=$(grep -E '^selfcheck: [0-9]+ passed, [0-9]+ failed' /tmp/selfcheck.out | tail -1)
sc_passed=$(echo "$sc" | sed -n 's/^selfcheck: \([0-9]*\) passed.*/\1/p')
sc_failed=$(echo "$sc" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
[ -n "$sc" ] || { sc_passed=0 sc_failed=1; }

echo "== stockade battery on $kernel =="
eval "set -- $(cat /etc/stockade-vm/battery-args)"
out=/tmp/battery.out
t0=$(date +%s)
"$B" --stockade "$S" --probe "$P" "$@" 2>&1 | tee "$out"
brc=$?
# The pipe's status is tee's; the runner's comes from its own summary.
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
passed=$(echo "$summary" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
failed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
if [ -z "$summary" ]; then
	echo "stockade-vm: the battery printed no 'N passed, N failed' line"
	passed=0 failed=1 brc=1
elif [ "$failed" != 0 ]; then
	brc=1
else
	brc=0
fi

t1=$(date +%s)
prc=0
pargs=$(cat /etc/stockade-vm/posture-args)
if [ "$pargs" = "'skip'" ]; then
	echo "== posture check skipped (--no-posture) =="
else
	# The runner is given oom_score_adj -500 and nice -5 first (as a unit's OOMScoreAdjust= and
	# Nice= would give the daemon): the posture check then proves no sandboxed thread keeps
	# them. Here root holds CAP_SYS_RESOURCE, which lowering oom_score_adj takes (the CI host's
	# root does not, so runtime/tests/exec.rs checks only the positive half there); the runner's
	# own values are checked first, the native control of that check.
	echo "== posture check on $kernel (runner at oom_score_adj -500, nice -5) =="
	eval "set -- $pargs"
	(
		read -r self _ </proc/self/stat # this subshell ($$ is the script's)
		echo -500 >/proc/self/oom_score_adj && renice -n -5 -p "$self" >/dev/null || exit 1
		read -r oom </proc/self/oom_score_adj
		nice=$(cut -d' ' -f19 /proc/self/stat)
		if [ "$oom" != -500 ] || [ "$nice" != -5 ]; then
			echo "stockade-vm: the posture runner has oom_score_adj $oom, nice $nice; wanted -500, -5"
			exit 1
		fi
		exec "$B" --posture --stockade "$S" --probe "$P" "$@"
	)
	prc=$?
	if [ $prc = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
fi
t2=$(date +%s)
krc=0
if [ "$(cat /etc/stockade-vm/pkgrun)" = skip ]; then
	echo "== package run skipped (--no-package-run) =="
else
	/usr/local/libexec/stockade-vm/pkgrun.sh
	krc=$?
	if [ $krc = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
fi
t3=$(date +%s)
passed=$((passed + sc_passed))
failed=$((failed + sc_failed))
echo "selfcheck: $([ "$sc_failed" = 0 ] && echo ok || echo FAILED), battery: $([ $brc = 0 ] && echo ok || echo FAILED) in $((t1 - t0))s, posture: $([ $prc = 0 ] && echo ok || echo FAILED) in $((t2 - t1))s, package run: $([ $krc = 0 ] && echo ok || echo FAILED) in $((t3 - t2))s"
echo "qemu-$kernel: $passed passed, $failed failed"
[ $brc = 0 ] && [ $prc = 0 ] && [ $krc = 0 ] && [ "$sc_failed" = 0 ]
