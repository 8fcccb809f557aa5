#!/bin/sh
# shellcheck shell=dash disable=SC3045 # busybox ash: ulimit -n/-S/-H exist
# Guest self-check: does this kernel offer what the sandbox battery needs?
# Runs inside the VM as the payload of `run-matrix.sh --selfcheck`. Each check
# prints "PASS <name>: <detail>" or "FAIL <name>: <detail>"; the last line is
# "selfcheck: N passed, N failed" and the exit status is 1 if anything failed.
#
# Expected values come from the environment so that another kernel can be
# checked with the same script: EXPECT_KERNEL (prefix of uname -r, default
# 6.1.), EXPECT_LANDLOCK_ABI (default 2), EXPECT_X32 (1 = x32 calls must work).
H=/usr/local/libexec/stockade-vm
EXPECT_KERNEL=${EXPECT_KERNEL-6.1.}
EXPECT_LANDLOCK_ABI=${EXPECT_LANDLOCK_ABI-2}
EXPECT_X32=${EXPECT_X32-1}
passed=0
failed=0
# shellcheck source=/dev/null # written by run-matrix.sh
. /etc/stockade-vm/run.env

pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# check NAME DETAIL CONDITION-COMMAND...: pass if the command succeeds.
check() {
	name=$1 detail=$2
	shift 2
	if "$@" >/dev/null 2>&1; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}
# check_run NAME COMMAND...: run a helper once; pass on status 0. The detail
# is its first FAIL line, or its last line when all went well.
check_run() {
	name=$1
	shift
	out=$("$@" 2>&1)
	st=$?
	detail=$(echo "$out" | grep -m1 FAIL || echo "$out" | tail -1)
	if [ $st = 0 ]; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}

echo "== stockade-vm selfcheck =="
kver=$(uname -r)
case "$kver" in
"$EXPECT_KERNEL"*) pass kernel "uname -r = $kver" ;;
*) fail kernel "uname -r = $kver, expected $EXPECT_KERNEL*" ;;
esac
echo "   cmdline: $(cat /proc/cmdline)"

# --- cgroups: v2 only, with the controllers the runtime limits with. ---
v1=$(awk '$3 == "cgroup" { print $2 }' /proc/mounts)
check cgroup-v2-mounted "cgroup2 at /sys/fs/cgroup" \
	grep -q '^cgroup2 /sys/fs/cgroup cgroup2 ' /proc/mounts
check no-cgroup-v1-mounts "v1 mounts: ${v1:-none}" [ -z "$v1" ]
# /proc/cgroups column 2 is the v1 hierarchy id: 0 everywhere means no v1
# hierarchy is bound, even unmounted.
v1h=$(awk '!/^#/ && $2 != 0 { print $1 }' /proc/cgroups | tr '\n' ' ')
check no-cgroup-v1-hierarchies "bound: ${v1h:-none}" [ -z "$v1h" ]
ctrls=$(cat /sys/fs/cgroup/cgroup.controllers)
for c in cpu memory pids; do
	check "cgroup2-controller-$c" "root controllers: $ctrls" \
		grep -qw "$c" /sys/fs/cgroup/cgroup.controllers
done
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "   payload cgroup: $own (layout ${STOCKADE_VM_CGROUP_LAYOUT:-?}), subtree_control of /: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cg=/sys/fs/cgroup/selfcheck.$$
# Each step is announced before it runs and the one step that runs a process
# is bounded by `timeout`: a guest that stalls here (seen twice in CI: the
# console went silent after the line above until the VM's 600 s limit) then
# names the step and fails in seconds. cpu.max is written as a whole CPU per
# period so the single-threaded shell moved in is never throttled: the check is
# that the file is accepted and reads back, not CFS bandwidth control under TCG.
bad=
step() { echo "   cgroup child: $1"; }
if mkdir "$cg" 2>/dev/null; then
	step "limits"
	echo 33554432 >"$cg/memory.max" || bad="$bad memory.max"
	echo 0 >"$cg/memory.swap.max" 2>/dev/null # absent without swap accounting
	echo 16 >"$cg/pids.max" || bad="$bad pids.max"
	echo "100000 100000" >"$cg/cpu.max" || bad="$bad cpu.max"
	[ "$(cat "$cg/pids.max")" = 16 ] || bad="$bad pids.max-readback"
	[ "$(cat "$cg/cpu.max")" = "100000 100000" ] || bad="$bad cpu.max-readback"
	# Move a shell in, check that it is accounted there, then leave.
	step "move a shell in"
	timeout 60 sh -c "echo \$\$ > $cg/cgroup.procs && grep -q '^0::/selfcheck.$$\$' /proc/self/cgroup" ||
		bad="$bad move(status $?)"
	step "cgroup.kill"
	echo 1 >"$cg/cgroup.kill" 2>/dev/null || bad="$bad cgroup.kill"
	step "rmdir"
	rmdir "$cg" || bad="$bad rmdir"
	check cgroup2-child-limits "memory.max, pids.max, cpu.max, cgroup.kill on a child${bad:+; failed:$bad}" [ -z "$bad" ]
else
	fail cgroup2-child-limits "cannot create $cg"
fi

# --- Landlock ---
lsm=$(cat /sys/kernel/security/lsm 2>/dev/null)
check landlock-in-lsm-list "lsm: ${lsm:-unreadable}" \
	sh -c "echo '$lsm' | tr ',' '\n' | grep -qx landlock"
abi=$("$H/landlock-abi")
check landlock-abi "ABI $abi (expected $EXPECT_LANDLOCK_ABI)" [ "$abi" = "$EXPECT_LANDLOCK_ABI" ]

# --- seccomp ---
actions=$(cat /proc/sys/kernel/seccomp/actions_avail 2>/dev/null)
check seccomp-filter "actions: $actions" sh -c "echo '$actions' | grep -qw kill_process"

# --- x32 ---
if [ "$EXPECT_X32" = 1 ]; then
	check_run x32-syscalls "$H/x32-getpid"
else
	check_run x32-syscalls-absent sh -c "! $H/x32-getpid"
fi

# --- namespaces (the sandbox's clone flags, maps, pivot_root, fresh /proc) ---
for ns in user mnt pid net ipc uts cgroup; do
	check "namespace-$ns" "/proc/self/ns/$ns" [ -e "/proc/self/ns/$ns" ]
done
userns_sysctl=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo absent)
echo "   kernel.unprivileged_userns_clone = $userns_sysctl, user.max_user_namespaces = $(cat /proc/sys/user/max_user_namespaces)"
check_run userns-root "$H/nscheck" root
check_run userns-unprivileged "$H/nscheck" nobody

# --- filesystem layout the sandbox binds read-only ---
for l in bin:usr/bin lib:usr/lib lib64:usr/lib64 sbin:usr/sbin; do
	link=${l%%:*} target=${l#*:}
	check "merged-usr-/$link" "/$link -> $(readlink "/$link")" [ "$(readlink "/$link")" = "$target" ]
done
check root-dir-mode "/ is $(stat -c %a /) owned by $(stat -c %u /)" [ "$(stat -c %a:%u /)" = 755:0 ]
# The initial rootfs is its own parent in mountinfo; init's bind+move leaves
# a root mount with a parent, which pivot_root(2) requires.
# shellcheck disable=SC2016 # awk fields
check root-is-pivotable "/ is a mount with a parent (not the initial rootfs)" \
	awk '$5 == "/" { found = 1; if ($1 == $2) bad = 1 } END { exit (bad || !found) }' /proc/self/mountinfo
for d in null zero full random urandom; do
	check "dev-$d" "/dev/$d is a character device" [ -c "/dev/$d" ]
done
check etc-passwd "root and nobody" sh -c 'grep -q "^root:" /etc/passwd && grep -q "^nobody:" /etc/passwd'
# shellcheck disable=SC2016 # expanded by the inner shell
check etc-shadow "mode $(stat -c %a /etc/shadow), readable by root only" \
	sh -c '[ "$(stat -c %a:%u /etc/shadow)" = 640:0 ] && [ -s /etc/shadow ]'
check machine-id "$(cat /etc/machine-id)" grep -qE '^[0-9a-f]{32}$' /etc/machine-id
t=/tmp/selfcheck-tmpfs
mkdir -p $t
check tmpfs-limits "size=1m,nr_inodes=8" sh -c "mount -t tmpfs -o size=1m,nr_inodes=8 tmpfs $t && grep -q ' $t tmpfs .*size=1024k.*nr_inodes=8' /proc/mounts"
umount $t 2>/dev/null
rmdir $t

# --- kernel modules the host asked for (run.env's STOCKADE_VM_MODULES) ---
for m in $STOCKADE_VM_MODULES; do
	check "module-$m" "loaded at boot" grep -q "^$(echo "$m" | tr - _) " /proc/modules
done
for d in /dev/net/tun /dev/fuse /dev/kvm /dev/loop-control; do
	[ -c "$d" ] && echo "   $d present" || echo "   $d absent"
done
echo "   RLIMIT_NOFILE soft $(ulimit -Sn) hard $(ulimit -Hn)"

# --- a dynamically linked host binary, copied with its libraries ---
if [ -x /usr/local/bin/host-uname ]; then
	hv=$(/usr/local/bin/host-uname -r 2>&1)
	check dynamic-host-binary "host coreutils uname -r: $hv" [ "$hv" = "$kver" ]
else
	fail dynamic-host-binary "/usr/local/bin/host-uname was not added"
fi

echo "selfcheck: $passed passed, $failed failed"
[ "$failed" = 0 ]
