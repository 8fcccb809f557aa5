#!/bin/bash
# run-matrix.sh: boot Debian's 6.1 kernel under qemu (TCG) from an initramfs
# built here, run a payload command inside, stream the console, and exit with
# the payload's status. See README.md in this directory.
#
# Usage:
#   run-matrix.sh [OPTIONS] --selfcheck
#   run-matrix.sh [OPTIONS] --stockade PATH --battery PATH --probe PATH
#   run-matrix.sh [OPTIONS] --matrix [--release]   (builds the three binaries
#                      from this checkout with cargo, then as above; CI's call)
#   run-matrix.sh [OPTIONS] -- COMMAND [ARGS...]     (runs in the guest)
#   run-matrix.sh [OPTIONS] --systemd (--matrix [--release] | --stockade PATH)
#                      (systemd as pid 1 in the guest, running the shipped
#                      stockade.socket/.service: guest/systemd-check.sh)
#
# Options:
#   --add HOST:GUEST   copy a host file or directory into the guest (repeatable);
#                      dynamic ELF files bring their shared libraries along
#   --module NAME      load this module of the Debian kernel at boot (repeatable;
#                      default: vsock loop tun fuse kvm_amd, so that AF_VSOCK,
#                      /dev/loop*, /dev/net/tun, /dev/fuse and /dev/kvm exist
#                      for the probes' native controls); --no-modules: none
#   --cgroup-layout L  root (default): the payload runs in the root cgroup;
#                      scope: in /payload.scope, like a systemd login session
#   --env KEY=VALUE    set a variable for the payload (repeatable); CI is
#                      forwarded automatically when set on the host
#   --battery-arg ARG  extra argument for the battery run (repeatable; given
#                      after the VM defaults --mem-mb 512 --fork-max 256
#                      --fsize-mb 64 --inode-max 4096 --expect-pids 64, so a
#                      repeated flag overrides them)
#   --posture-arg ARG  extra argument for the posture check (repeatable)
#   --no-posture       skip the posture check
#   --no-package-run   skip the package run (guest/pkgrun.sh: `stockade run`
#                      of a package signed in the guest, its tree kept,
#                      reused and set aside after a change; it needs a real
#                      stockade binary, so stand-ins pass this)
#   --timeout SECS     wall-clock limit for the whole VM run (default 600)
#   --memory MB        guest memory (default 2048)
#   --smp N            guest CPUs (default 2)
#   --cpu MODEL        qemu CPU model (default max)
#   --kernel PATH      boot this bzImage instead of Debian's 6.1
#   --append ARGS      extra kernel command line arguments
#   --cache DIR        cache for the kernel and helpers
#                      (default ${XDG_CACHE_HOME:-$HOME/.cache}/stockade-qemu)
#   --log FILE         console log (default: under the cache's logs/)
#   --no-provision     never call apt-get; fail if something is missing
#   --no-strip         keep debug info in added ELF files (stripped by default
#                      in the guest copy only, to keep the initramfs small)
#   --keep-work        keep the staging tree and initramfs (path is printed)
#   --quiet            do not echo the console (the log is still written)
#
# Exit status: the payload's, or 64 usage, 69 provisioning failed, 70 build
# failed, 120 guest kernel panic, 121 boot failure (no status reported),
# 124 timeout.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/provision.sh"
. "$HERE/lib/initramfs.sh"
. "$HERE/lib/vm.sh"
. "$HERE/lib/workspace.sh"

usage() {
	sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

MODE=""
MATRIX=0
SYSTEMD=0
PROFILE=dev
ADDS=()
ENVS=()
MODULES=()
DEFAULT_MODULES=(vsock loop tun fuse kvm_amd)
CGROUP_LAYOUT=root
BATTERY_ARGS=()
# Bomb caps for the VM: the battery's defaults (1 GiB, 1024 processes, 256 MiB,
# 20000 inodes) make the native controls alone take a minute under TCG; these
# are still 2-4 times the default policy's limits (memory 256M, pids 64,
# fsize 16M, 1024 tmp inodes), so a bomb that is not stopped still shows.
VM_BATTERY_ARGS=(--mem-mb 512 --fork-max 256 --fsize-mb 64 --inode-max 4096 --expect-pids 64)
POSTURE_ARGS=()
POSTURE=1
PKGRUN=1
PLUGIN_BIN="" PLUGIN_SRC="" # set by build_plugin
PAYLOAD=()
STOCKADE="" BATTERY="" PROBE=""
TIMEOUT=${STOCKADE_QEMU_TIMEOUT:-600}
MEMORY=2048
SMP=2
CPU=max
KERNEL=""
APPEND_EXTRA=""
CACHE=${STOCKADE_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stockade-qemu}
LOG=""
NO_PROVISION=0
KEEP_WORK=0
QUIET=0
STRIP=1

need_arg() { [ $# -ge 2 ] || die "$EXIT_USAGE" "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--selfcheck) MODE=selfcheck ;;
	--matrix) MATRIX=1 ;;
	--systemd) SYSTEMD=1 ;;
	--release) PROFILE=release ;;
	--stockade) need_arg "$@"; STOCKADE=$2; shift ;;
	--battery) need_arg "$@"; BATTERY=$2; shift ;;
	--probe) need_arg "$@"; PROBE=$2; shift ;;
	--battery-arg) need_arg "$@"; BATTERY_ARGS+=("$2"); shift ;;
	--posture-arg) need_arg "$@"; POSTURE_ARGS+=("$2"); shift ;;
	--no-posture) POSTURE=0 ;;
	--no-package-run) PKGRUN=0 ;;
	--add) need_arg "$@"; ADDS+=("$2"); shift ;;
	--env) need_arg "$@"; ENVS+=("$2"); shift ;;
	--module) need_arg "$@"; MODULES+=("$2"); shift ;;
	--no-modules) DEFAULT_MODULES=() ;;
	--cgroup-layout) need_arg "$@"; CGROUP_LAYOUT=$2; shift ;;
	--timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
	--memory) need_arg "$@"; MEMORY=$2; shift ;;
	--smp) need_arg "$@"; SMP=$2; shift ;;
	--cpu) need_arg "$@"; CPU=$2; shift ;;
	--kernel) need_arg "$@"; KERNEL=$2; shift ;;
	--append) need_arg "$@"; APPEND_EXTRA=$2; shift ;;
	--cache) need_arg "$@"; CACHE=$2; shift ;;
	--log) need_arg "$@"; LOG=$2; shift ;;
	--no-provision) NO_PROVISION=1 ;;
	--keep-work) KEEP_WORK=1 ;;
	--no-strip) STRIP=0 ;;
	--quiet) QUIET=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; PAYLOAD=("$@"); break ;;
	*) die "$EXIT_USAGE" "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

# --- validate the command line before touching anything ---
if [ "$SYSTEMD" = 1 ]; then
	# Only the runtime runs in this mode; --matrix builds it (and the others).
	[ -z "$MODE" ] || die "$EXIT_USAGE" "--systemd and --$MODE exclude each other"
	[ "$MATRIX" = 1 ] || [ -n "$STOCKADE" ] || die "$EXIT_USAGE" "--systemd needs --matrix or --stockade PATH"
	[ "$MATRIX" = 0 ] || [ -z "$STOCKADE$BATTERY$PROBE" ] || die "$EXIT_USAGE" "--matrix builds its own binaries: drop --stockade/--battery/--probe"
	[ "$MATRIX" = 1 ] || [ "$PROFILE" = dev ] || die "$EXIT_USAGE" "--release only applies to --matrix"
	MODE=systemd
elif [ "$MATRIX" = 1 ]; then
	[ -z "$STOCKADE$BATTERY$PROBE" ] || die "$EXIT_USAGE" "--matrix builds its own binaries: drop --stockade/--battery/--probe"
	[ -z "$MODE" ] || die "$EXIT_USAGE" "--matrix and --$MODE exclude each other"
	MODE=battery
elif [ "$PROFILE" = release ]; then
	die "$EXIT_USAGE" "--release only applies to --matrix"
elif [ -n "$STOCKADE$BATTERY$PROBE" ]; then
	[ -z "$MODE" ] || die "$EXIT_USAGE" "--selfcheck and --stockade/--battery/--probe exclude each other"
	if [ -z "$STOCKADE" ] || [ -z "$BATTERY" ] || [ -z "$PROBE" ]; then
		die "$EXIT_USAGE" "the matrix needs all three of --stockade, --battery and --probe"
	fi
	MODE=battery
fi
if [ ${#PAYLOAD[@]} -gt 0 ]; then
	[ -z "$MODE" ] || die "$EXIT_USAGE" "a -- COMMAND cannot be combined with --$MODE"
	MODE="command"
fi
[ -n "$MODE" ] || die "$EXIT_USAGE" "nothing to run: give --selfcheck, --stockade/--battery/--probe, or -- COMMAND"
case "$CGROUP_LAYOUT" in
root | scope) ;;
*) die "$EXIT_USAGE" "--cgroup-layout is root or scope, got '$CGROUP_LAYOUT'" ;;
esac
for n in "$TIMEOUT:--timeout" "$MEMORY:--memory" "$SMP:--smp"; do
	case "${n%%:*}" in
	'' | *[!0-9]* | 0) die "$EXIT_USAGE" "${n#*:} needs a positive integer, got '${n%%:*}'" ;;
	esac
done
for a in "${ADDS[@]+"${ADDS[@]}"}"; do
	case "$a" in
	*:/*) [ -e "${a%%:/*}" ] || die "$EXIT_USAGE" "--add $a: no such host file: ${a%%:/*}" ;;
	*) die "$EXIT_USAGE" "--add wants HOSTPATH:/GUEST/PATH, got '$a'" ;;
	esac
done
for e in "${ENVS[@]+"${ENVS[@]}"}"; do
	case "$e" in
	[A-Za-z_]*=*) ;;
	*) die "$EXIT_USAGE" "--env wants KEY=VALUE, got '$e'" ;;
	esac
done
[ -n "${CI:-}" ] && ENVS=("CI=$CI" "${ENVS[@]+"${ENVS[@]}"}")
for f in "$STOCKADE" "$BATTERY" "$PROBE"; do
	[ -z "$f" ] || [ -f "$f" ] || die "$EXIT_USAGE" "no such file: $f"
done

# --- provision ---
[ "$MATRIX" = 1 ] && build_workspace_binaries
# --systemd boots the host's own systemd in the guest.
[ "$MODE" = systemd ] && HOST_NEEDS+=(/usr/lib/systemd/systemd:systemd /usr/bin/systemctl:systemd)
mkdir -p "$CACHE"/{kernel,helpers,logs,work} || die "$EXIT_UNAVAILABLE" "cannot create cache $CACHE"
provision_host_tools
provision_kernel
build_helpers
if { [ "$MODE" = battery ] && [ "$PKGRUN" = 1 ]; } || [ "$MODE" = systemd ]; then
	build_plugin
fi

# --- build the initramfs ---
WORK=$(mktemp -d "$CACHE/work/run.XXXXXX") || die "$EXIT_BUILD" "mktemp failed"
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ "$KEEP_WORK" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
build_start=$(date +%s)
initramfs_begin "$WORK/root"
for h in "$HELPERS_DIR"/*; do add_file "$h" "/usr/local/libexec/stockade-vm/$(basename "$h")"; done
install -m 0755 "$HERE/guest/selfcheck.sh" "$STAGE/usr/local/libexec/stockade-vm/selfcheck.sh"
install -m 0755 "$HERE/guest/battery.sh" "$STAGE/usr/local/libexec/stockade-vm/battery.sh"
install -m 0755 "$HERE/guest/pkgrun.sh" "$STAGE/usr/local/libexec/stockade-vm/pkgrun.sh"
install -m 0755 "$HERE/guest/sign-plugin.sh" "$STAGE/usr/local/libexec/stockade-vm/sign-plugin.sh"
# The plugin directory sign-plugin.sh packs (package run, systemd check): the
# static bench plugin, when build_plugin made it.
if [ -n "$PLUGIN_BIN" ]; then
	mkdir -p "$STAGE/usr/local/libexec/stockade-vm/plugin"
	install -m 0755 "$PLUGIN_BIN" "$STAGE/usr/local/libexec/stockade-vm/plugin/entrypoint"
	install -m 0644 "$PLUGIN_SRC/manifest.json" "$STAGE/usr/local/libexec/stockade-vm/plugin/manifest.json"
fi
# A dynamically linked host binary for the self-check (proves the lib copying).
add_file "$(command -v uname)" /usr/local/bin/host-uname
for a in "${ADDS[@]+"${ADDS[@]}"}"; do add_file "${a%%:/*}" "/${a#*:/}"; done
# The default modules only come with the Debian kernel; a --kernel of unknown
# provenance has no modules tree.
[ -z "$KMODS" ] && DEFAULT_MODULES=()
MODULES=("${DEFAULT_MODULES[@]+"${DEFAULT_MODULES[@]}"}" "${MODULES[@]+"${MODULES[@]}"}")
add_modules "${MODULES[@]+"${MODULES[@]}"}"

case "$MODE" in
selfcheck)
	PAYLOAD=(/usr/local/libexec/stockade-vm/selfcheck.sh)
	;;
battery)
	add_file "$STOCKADE" /usr/local/bin/stockade
	add_file "$BATTERY" /usr/local/bin/stockade-battery
	add_file "$PROBE" /usr/local/bin/stockade-probe
	PAYLOAD=(/usr/local/libexec/stockade-vm/battery.sh)
	sh_quote_all "${VM_BATTERY_ARGS[@]}" "${BATTERY_ARGS[@]+"${BATTERY_ARGS[@]}"}" >"$STAGE/etc/stockade-vm/battery-args"
	if [ "$POSTURE" = 1 ]; then
		sh_quote_all "${POSTURE_ARGS[@]+"${POSTURE_ARGS[@]}"}" >"$STAGE/etc/stockade-vm/posture-args"
	else
		sh_quote skip >"$STAGE/etc/stockade-vm/posture-args"
	fi
	if [ "$PKGRUN" = 1 ]; then
		echo run >"$STAGE/etc/stockade-vm/pkgrun"
	else
		echo skip >"$STAGE/etc/stockade-vm/pkgrun"
	fi
	;;
systemd)
	# The shipped units and snippets as the packages install them, the host's
	# systemd (Debian 12's, with the few targets the units' default
	# dependencies name), and the check (guest/systemd/, systemd-check.sh).
	REPO=$(cd "$HERE/../.." && pwd)
	add_file "$STOCKADE" /usr/bin/stockade
	for b in /usr/lib/systemd/systemd /usr/bin/systemctl /usr/bin/systemd-sysusers /usr/bin/systemd-tmpfiles; do
		[ -x "$b" ] || die "$EXIT_UNAVAILABLE" "--systemd needs the host's systemd: no $b"
		add_file "$b" "$b"
	done
	for t in sysinit basic sockets shutdown local-fs local-fs-pre swap slices paths timers multi-user umount final; do
		add_file "/usr/lib/systemd/system/$t.target" "/usr/lib/systemd/system/$t.target"
	done
	add_file "$REPO/systemd/stockade.service" /usr/lib/systemd/system/stockade.service
	add_file "$REPO/systemd/stockade.socket" /usr/lib/systemd/system/stockade.socket
	add_file "$REPO/systemd/stockade-audit-rotate.service" /usr/lib/systemd/system/stockade-audit-rotate.service
	add_file "$REPO/packaging/sysusers.d/stockade.conf" /usr/lib/sysusers.d/stockade.conf
	add_file "$REPO/packaging/tmpfiles.d/stockade.conf" /usr/lib/tmpfiles.d/stockade.conf
	add_file "$REPO/packaging/policy.toml" /etc/stockade/policy.toml
	for u in "$HERE"/guest/systemd/*; do add_file "$u" "/etc/systemd/system/$(basename "$u")"; done
	install -m 0755 "$HERE/guest/systemd-check.sh" "$STAGE/usr/local/libexec/stockade-vm/systemd-check.sh"
	printf 'passwd: files\ngroup: files\nshadow: files\ngshadow: files\n' >"$STAGE/etc/nsswitch.conf"
	tr -d '-' </proc/sys/kernel/random/uuid >"$STAGE/etc/machine-id"
	touch "$STAGE/etc/stockade-vm/systemd"
	PAYLOAD=(/usr/local/libexec/stockade-vm/systemd-check.sh)
	;;
esac
NONCE=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "exec $(sh_quote_all "${PAYLOAD[@]}")" >"$STAGE/etc/stockade-vm/payload"
{
	printf 'STOCKADE_VM_NONCE=%s\n' "$NONCE"
	printf 'STOCKADE_VM_CGROUP_LAYOUT=%s\n' "$CGROUP_LAYOUT"
	printf 'STOCKADE_VM_MODULES=%s\n' "$(sh_quote "${MODULES[*]+"${MODULES[*]}"}")"
	printf 'STOCKADE_VM_ENV=%s\n' "$(sh_quote "$(sh_quote_all "${ENVS[@]+"${ENVS[@]}"}")")"
} >"$STAGE/etc/stockade-vm/run.env"
initramfs_finish "$WORK/initramfs.cpio"
say "initramfs: $(du -h "$WORK/initramfs.cpio" | cut -f1) built in $(($(date +%s) - build_start))s; payload: ${PAYLOAD[*]}"

# --- boot ---
# Default logs go to the cache; keep the newest 20 there, and drop work dirs
# that a killed run left behind a day ago or more.
find "$CACHE/logs" -maxdepth 1 -name '*.log' -printf '%T@ %p\n' 2>/dev/null | sort -rn | tail -n +21 |
	cut -d' ' -f2- | xargs -r rm -f
find "$CACHE/work" -mindepth 1 -maxdepth 1 -name 'run.*' -mtime +0 -exec rm -rf {} + 2>/dev/null
[ -n "$LOG" ] || LOG="$CACHE/logs/$(date -u +%Y%m%dT%H%M%SZ)-$MODE.log"
mkdir -p "$(dirname "$LOG")"
status=0
run_vm "$WORK/initramfs.cpio" "$LOG" "$NONCE" || status=$?
exit "$status"
