#!/bin/sh
# shellcheck shell=dash
# Guest payload of scripts/test.sh's "kernel missing layers" step: Debian's 6.1
# booted with `lsm=lockdown,capability,yama cgroup_disable=memory`, so Landlock
# and the memory controller are really missing (not faked). A missing layer
# must stop the launch unless the policy allows that degradation, and an
# allowed one must be said (audit-154):
#   1. the default policy: refused, 125 layer_unavailable, naming `memory`;
#   2. `cgroup` allowed, Landlock not: refused, 125 layer_unavailable,
#      naming the degradation `landlock` (before audit-154: sandbox_setup);
#   3. both allowed: runs; the report's cgroup and landlock layers are
#      not_enforced with their reasons, stderr warns of both, and the audit
#      record's detail.degraded names both.
# A refused launch's audit record names the degradation refused and the cause
# (detail.refused, detail.error: review-158).
# brief-165: `node info` predicts both refusals; with Debian's
# kernel.unprivileged_userns_clone = 0, a launch by nobody is refused naming
# the switch and its way out, and `node info` as nobody names it too.
# Prints "degraded: ok" or "degraded: FAILED (why)"; exit status 0 or 1.
S=/usr/local/bin/stockade
W=/tmp/degraded
mkdir -p "$W" && cd "$W" || exit 1

fail() {
	echo "degraded: FAILED ($*)"
	for f in *.out *.err *.audit; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
	exit 1
}
# policy NAME ALLOW: a policy allowing the degradations ALLOW (TOML list
# items), with its own audit log.
policy() {
	printf 'version = 1\n[layers]\nallow_degraded = [%s]\n[audit]\nfile = "%s/%s.audit"\n' \
		"$2" "$W" "$1" >"$1.toml"
}

grep -qw landlock /sys/kernel/security/lsm && fail "landlock is active: $(cat /sys/kernel/security/lsm)"
grep -qw memory /sys/fs/cgroup/cgroup.controllers && fail "the memory controller is offered"

policy default '"landlock_network", "landlock_scope"'
"$S" exec --json --policy default.toml -- /bin/true >default.out 2>default.err
rc=$?
[ $rc = 125 ] || fail "default policy: exit $rc, expected 125"
grep -q '"kind":"layer_unavailable"' default.out || fail "default policy: not layer_unavailable"
grep -q 'controller `memory` is not offered' default.out || fail "default policy: memory not named"
grep -q '"kind":"layer_unavailable"' default.audit || fail "default policy: audit record"
# review-158: the refused launch's record names the degradation and the cause.
grep -q '"refused":"cgroup"' default.audit || fail "default policy: audit detail.refused"
grep -q 'controller `memory` is not offered' default.audit || fail "default policy: audit detail.error"

policy nolandlock '"landlock_network", "landlock_scope", "cgroup"'
"$S" exec --json --policy nolandlock.toml -- /bin/true >nolandlock.out 2>nolandlock.err
rc=$?
[ $rc = 125 ] || fail "landlock not allowed: exit $rc, expected 125"
grep -q '"kind":"layer_unavailable"' nolandlock.out || fail "landlock not allowed: not layer_unavailable"
grep -q 'degradation `landlock`' nolandlock.out || fail "landlock not allowed: degradation not named"
grep -q '"refused":"landlock"' nolandlock.audit || fail "landlock not allowed: audit detail.refused"

policy allowed '"landlock", "landlock_network", "landlock_scope", "cgroup"'
"$S" exec --policy allowed.toml --report allowed.report -- /bin/true >allowed.out 2>allowed.err
rc=$?
[ $rc = 0 ] || fail "both allowed: exit $rc, expected 0"
tr -d ' \n' <allowed.report >allowed.flat
grep -q '"layer":"landlock","status":"not_enforced"' allowed.flat || fail "report: landlock"
grep -q '"layer":"cgroup","status":"not_enforced"' allowed.flat || fail "report: cgroup"
grep -q 'thiskernelhasnoLandlock' allowed.flat || fail "report: no landlock reason"
grep -q 'controller`memory`isnotoffered' allowed.flat || fail "report: no memory reason"
grep -q 'layer `landlock` is not enforced.*no Landlock' allowed.err || fail "stderr: landlock warning"
grep -q 'layer `cgroup` is not enforced.*`memory` is not offered' allowed.err || fail "stderr: cgroup warning"
launch=$(grep '"event":"launch"' allowed.audit)
echo "$launch" | grep -q '"degraded":\[.*"layer":"cgroup".*"layer":"landlock"' ||
	fail "audit: detail.degraded lacks cgroup or landlock"
echo "$launch" | grep -q 'no Landlock' || fail "audit: no landlock reason"
"$S" audit verify allowed.audit >/dev/null 2>&1 || fail "audit chain"

# brief-165: `node info` says before a launch what this kernel lacks and that
# the default policy would be refused at `cgroup` (memory) and `landlock`.
"$S" --json node info --state-dir "$W/state" --policy default.toml >node.out 2>node.err ||
	fail "node info: exit $?"
tr -d ' \n' <node.out >node.flat
grep -q '"landlock":{"abi":0,"in_lsm_list":false' node.flat || fail "node info: landlock facts"
grep -q '"controllers":{"memory":false' node.flat || fail "node info: memory offered"
grep -q '"layer":"cgroup","outcome":"refused","degradation":"cgroup"' node.flat ||
	fail "node info: cgroup prediction"
grep -q '"layer":"landlock","outcome":"refused","degradation":"landlock"' node.flat ||
	fail "node info: landlock prediction"
# Debian's kernel.unprivileged_userns_clone = 0 (this kernel has it): a caller
# other than root is refused, the switch named with its way out, by the launch
# (125 layer_unavailable) and by `node info` before it.
[ -f /proc/sys/kernel/unprivileged_userns_clone ] || fail "no kernel.unprivileged_userns_clone"
mkdir -p /tmp/nobody && chown 65534:65534 /tmp/nobody
printf 'version = 1\n[layers]\nallow_degraded = ["landlock", "landlock_network", "landlock_scope", "cgroup"]\n[audit]\nfile = "/tmp/nobody/userns.audit"\n' >userns.toml
chmod 644 userns.toml
echo 0 >/proc/sys/kernel/unprivileged_userns_clone
su -s /bin/sh nobody -c "cd /tmp/nobody && $S --json exec --policy $W/userns.toml -- /bin/true" >userns.out 2>userns.err
rc=$?
su -s /bin/sh nobody -c "$S --json node info --state-dir /tmp/nobody/state --policy $W/userns.toml" >usernsnode.out 2>usernsnode.err
nrc=$?
echo 1 >/proc/sys/kernel/unprivileged_userns_clone
[ $rc = 125 ] || fail "userns_clone=0: exit $rc, expected 125"
grep -q '"kind":"layer_unavailable"' userns.out || fail "userns_clone=0: not layer_unavailable"
grep -q 'kernel.unprivileged_userns_clone is 0' userns.out || fail "userns_clone=0: switch not named"
grep -q 'sysctl -w kernel.unprivileged_userns_clone=1' userns.out || fail "userns_clone=0: no way out"
[ $nrc = 0 ] || fail "userns_clone=0: node info exit $nrc"
tr -d ' \n' <usernsnode.out >usernsnode.flat
grep -q '"restricted_by":"kernel.unprivileged_userns_clone"' usernsnode.flat ||
	fail "userns_clone=0: node info did not name the switch"
grep -q '"layer":"user_namespace","outcome":"refused"' usernsnode.flat ||
	fail "userns_clone=0: node info prediction"
echo "degraded: ok"
