# shellcheck shell=bash disable=SC2034
# Shared by run-matrix.sh and its libraries: messages and the exit codes of the
# harness itself. The payload's own status is passed through unchanged, so the
# harness codes are chosen where test runners rarely land, and every one of
# them comes with a "run-matrix:" line on stderr saying what happened.

# The command line is wrong (sysexits EX_USAGE).
readonly EXIT_USAGE=64
# qemu, busybox, the kernel package or a compiler could not be provided
# (sysexits EX_UNAVAILABLE).
readonly EXIT_UNAVAILABLE=69
# Building the initramfs failed (sysexits EX_SOFTWARE: a bug or a bad --add).
readonly EXIT_BUILD=70
# The guest kernel panicked before the payload reported its status.
readonly EXIT_PANIC=120
# The VM stopped without a status line and without a panic message (qemu
# failed to start, init died, the payload powered the machine off...).
readonly EXIT_BOOT=121
# The wall-clock timeout expired (the value timeout(1) uses).
readonly EXIT_TIMEOUT=124

say() { printf 'run-matrix: %s\n' "$*" >&2; }
die() {
	local code=$1
	shift
	say "error: $*"
	exit "$code"
}

# Quote a word for a POSIX shell (busybox ash reads the generated scripts, so
# bash's printf %q, which may emit $'...', is not an option).
sh_quote() {
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

# Quote every argument and join them with spaces.
sh_quote_all() {
	local out="" a
	for a in "$@"; do out+="$(sh_quote "$a") "; done
	printf '%s' "${out% }"
}
