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
	echo "== posture check on $kernel =="
	eval "set -- $pargs"
	"$B" --posture --stockade "$S" --probe "$P" "$@"
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
