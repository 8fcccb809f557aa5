# shellcheck shell=bash
# Boot the VM, stream and log its console, and turn what happened into an exit
# status: the payload's own (from the STOCKADE-VM-EXIT line), or a harness
# code for timeout, kernel panic and boot failure.

# run_vm INITRD LOG NONCE: returns (via exit status) the final status.
run_vm() {
	local initrd=$1 log=$2 nonce=$3 qpid rc marker start end
	local append="console=ttyS0 syscall.x32=y panic=-1 quiet${APPEND_EXTRA:+ $APPEND_EXTRA}"
	say "kernel: $KERNEL_DESC"
	say "cmdline: $append"
	say "console log: $log"
	start=$(date +%s)
	# The log exists before tail looks for it: qemu's redirection below is made
	# in the background job, and a `tail -f` (not -F) that starts first finds
	# no file and gives up silently — the console was then not streamed.
	: >"$log"
	# -nodefaults: no VGA, NIC, monitor or parallel port, only the serial
	# console on stdio; -no-reboot: the guest's panic=-1 reboot becomes a
	# qemu exit, so a panic ends the run at once. stdin is /dev/null so that
	# qemu never puts a terminal into raw mode.
	timeout --kill-after=10 "$TIMEOUT" \
		qemu-system-x86_64 -accel tcg -cpu "$CPU" -m "$MEMORY" -smp "$SMP" \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial stdio -kernel "$KERNEL" -initrd "$initrd" -append "$append" \
		</dev/null >"$log" 2>&1 &
	qpid=$!
	# Stream the console while it is written; tail stops when qemu is gone.
	# \r from the serial line is dropped for readable CI logs.
	if [ "$QUIET" != 1 ]; then
		tail -n +1 -f --pid="$qpid" "$log" 2>/dev/null | tr -d '\r' &
	fi
	local tailpid=$!
	rc=0
	wait "$qpid" || rc=$?
	[ "$QUIET" != 1 ] && wait "$tailpid" 2>/dev/null
	end=$(date +%s)
	VM_SECONDS=$((end - start))

	marker=$(tr -d '\r' <"$log" | grep -a -o "^STOCKADE-VM-EXIT=[0-9]* nonce=$nonce\$" | tail -1)
	if [ -n "$marker" ]; then
		local status=${marker#STOCKADE-VM-EXIT=}
		status=${status%% *}
		say "payload exited with status $status (VM ran ${VM_SECONDS}s)"
		return "$status"
	fi
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		say "error: timeout: the VM did not finish within ${TIMEOUT}s (killed; see $log)"
		return "$EXIT_TIMEOUT"
	fi
	if grep -a -q 'Kernel panic' "$log"; then
		say "error: kernel panic in the guest: $(tr -d '\r' <"$log" | grep -a -m1 'Kernel panic')"
		return "$EXIT_PANIC"
	fi
	if [ "$rc" != 0 ]; then
		say "error: boot failure: qemu exited with status $rc: $(tr -d '\r' <"$log" | tail -3 | tr '\n' ' ')"
	else
		say "error: boot failure: the VM stopped after ${VM_SECONDS}s without reporting the payload's status (see $log)"
	fi
	return "$EXIT_BOOT"
}
