#!/bin/sh
# shellcheck shell=dash
# Guest check of `run-matrix.sh` in battery mode: the whole `stockade run`
# pipeline on this kernel, where the battery and the posture check only use
# `stockade exec`. A throwaway CA, the static bench plugin packed and signed,
# then three runs of the package, each to `ready` and back (stdin at EOF):
#   1. verified, extracted beside the sandbox's build, launched; its tree kept
#      (the launch record's detail.tree is "kept");
#   2. the kept tree checked file by file and bound ("reused") — the bind by
#      path checked against the inode the runtime checked;
#   3. one byte of the kept tree changed: set aside, the package extracted
#      again ("kept"), with the warning on stderr and in the verification
#      record.
#   4. in a cgroup whose parent does not delegate the cpu controller:
#      refused as root (cgroup_partial), run once the policy allows it.
# Then the audit log's hash chain, the core layers of every launch fully
# enforced, and nothing left behind: one kept tree, no work or discarded
# directories, no sandbox cgroup.
# Prints "pkgrun: ok" or "pkgrun: FAILED (why)"; exit status 0 or 1.
S=/usr/local/bin/stockade
W=/tmp/pkgrun

fail() {
	echo "pkgrun: FAILED ($*)"
	exit 1
}
# step COMMAND...: must succeed; its output is shown only when it does not.
step() {
	"$@" >"$W/step.out" 2>&1 || {
		cat "$W/step.out"
		fail "$*"
	}
}
# run N: one `stockade run` of the package to ready and back.
run() {
	"$S" run pkg.stockade --trust trust --state-dir state --policy policy.toml \
		</dev/null >"run$1.out" 2>"run$1.err"
	rc=$?
	if [ $rc != 0 ] || ! grep -q '"state":"ready"' "run$1.out"; then
		cat "run$1.out" "run$1.err"
		fail "run $1 exited $rc$(grep -q '"state":"ready"' "run$1.out" || echo ', never ready')"
	fi
}
# record EVENT N: the Nth audit record of EVENT.
record() {
	grep "\"event\":\"$1\"" audit.log | sed -n "${2}p"
}
# expect_tree N VALUE: the Nth launch record's detail.tree.
expect_tree() {
	got=$(record launch "$1" | grep -o '"tree":"[a-z]*"')
	[ "$got" = "\"tree\":\"$2\"" ] || fail "run $1: launch record has ${got:-no tree}, expected tree $2"
}

rm -rf "$W"
mkdir -p "$W/trust" || fail "mkdir $W"
cd "$W" || fail "cd $W"
echo "== package run on $(uname -r) =="
/usr/local/libexec/stockade-vm/sign-plugin.sh "$W/ca" "$W/pkg.stockade" "$W/trust" || fail "signing the plugin"
printf 'version = 1\n[audit]\nfile = "%s/audit.log"\n' "$W" >policy.toml
mkdir -m 0700 state || fail "mkdir state"

run 1
expect_tree 1 kept
run 2
expect_tree 2 reused
for f in state/trees/*/entrypoint; do printf x >>"$f" || fail "cannot change $f"; done
run 3
expect_tree 3 kept
grep -q 'did not match its signed map' run3.err || fail "run 3: no warning on stderr"
record verification 3 | grep -q '"warnings":\["the tree kept' ||
	fail "run 3: the verification record has no warning"
# Landlock may be partial here (ABI 2 on 6.1: no truncate or ioctl rights);
# the launch record says so and the policy allows it. Absent, it would stop
# the launch.
for n in 1 2 3; do
	layers=$(record launch $n | grep -o '"layers":\[[^]]*\]')
	for layer in cgroup seccomp capabilities distinct_uid filesystem; do
		echo "$layers" | grep -q "\"$layer:fully_enforced\"" ||
			fail "run $n: $layer not fully enforced: $layers"
	done
	echo "$layers" | grep -Eq '"landlock:(fully|partially)_enforced"' ||
		fail "run $n: landlock not enforced: $layers"
done
landlock=$(echo "$layers" | grep -o '"landlock:[a-z_]*"' | tr -d '"')

# 4. A cgroup without the cpu controller (its parent delegates only memory
#    and pids): cpu_max cannot be applied. As root that stops the launch
#    (125, naming cgroup_partial) unless the policy allows cgroup_partial;
#    then it runs with the cgroup layer partially enforced.
N=/sys/fs/cgroup/vm-nocpu
mkdir -p "$N/r4" "$N/r5" || fail "mkdir $N/r4 $N/r5"
echo "+memory +pids" >"$N/cgroup.subtree_control" || fail "cannot delegate memory and pids to $N"
# in_nocpu LEAF CMD...: CMD in a fresh leaf of $N (the runtime then enables
# controllers on it, after which no process can join it any more).
in_nocpu() { sh -c 'echo $$ >"$0/cgroup.procs" && shift && exec "$@"' "$N/$1" "$@"; }
in_nocpu r4 "$S" run pkg.stockade --trust trust --state-dir state --policy policy.toml \
	</dev/null >run4.out 2>run4.err
rc=$?
[ $rc = 125 ] || { cat run4.out run4.err; fail "no cpu controller: run exited $rc, expected 125"; }
grep -q cgroup_partial run4.err || { cat run4.err; fail "no cpu controller: the error does not name cgroup_partial"; }
! grep -q '"state":"ready"' run4.out || fail "no cpu controller: the plugin ran"
cp policy.toml policy-partial.toml
printf '[layers]\nallow_degraded = ["landlock_network", "landlock_scope", "cgroup_partial"]\n' >>policy-partial.toml
in_nocpu r5 "$S" run pkg.stockade --trust trust --state-dir state --policy policy-partial.toml \
	</dev/null >run5.out 2>run5.err
rc=$?
[ $rc = 0 ] && grep -q '"state":"ready"' run5.out || { cat run5.out run5.err; fail "cgroup_partial allowed: run exited $rc"; }
record launch 4 | grep -q '"outcome":"failed".*"kind":"layer_unavailable"' || fail "no cpu controller: the refused launch's record: $(record launch 4)"
record launch 5 | grep -q '"cgroup:partially_enforced"' || fail "cgroup_partial allowed: the launch record does not say partially_enforced: $(record launch 5)"
for d in "$N/r4/supervisor" "$N/r4" "$N/r5/supervisor" "$N/r5" "$N"; do
	[ -d "$d" ] && rmdir "$d" 2>/dev/null
done
echo "   no cpu controller: refused as root (125, cgroup_partial), run once the policy allows it (cgroup:partially_enforced)"
step "$S" audit verify audit.log

# The trees' private lock files (`.locks`, one per tree: docs/store.md) stay beside them; the
# one tree kept holds at most one.
left=$(ls -A state/trees | grep -vx '.locks')
[ "$(ls -A state/trees/.locks 2>/dev/null | wc -l)" -le 1 ] ||
	fail "state/trees/.locks holds $(ls -A state/trees/.locks | wc -l) lock files for one tree"
case "$left" in
*[!0-9a-f]* | '') fail "state/trees holds '$(echo "$left" | tr '\n' ' ')', expected one kept tree" ;;
esac
[ "$(echo "$left" | wc -l)" = 1 ] || fail "state/trees holds $(echo "$left" | wc -l) entries"
cgroups=$(find /sys/fs/cgroup -type d -name 'stockade-*' 2>/dev/null)
[ -z "$cgroups" ] || fail "sandbox cgroups left: $cgroups"
echo "   3 runs: trees kept, reused, set aside and extracted again; audit chain intact; layers enforced ($landlock); nothing left"
echo "pkgrun: ok"
