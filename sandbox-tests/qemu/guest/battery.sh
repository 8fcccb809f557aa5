#!/bin/sh
# shellcheck shell=dash disable=SC3045 # busybox ash: ulimit -n/-S/-H exist
# Guest payload of `run-matrix.sh --stockade --battery --probe`: the escape
# battery against the sandbox on this kernel. Extra arguments go to the
# battery runner. Prints the runner's table and its "N passed, N failed" line;
# exits non-zero if the runner or the posture check fails.
echo "== stockade battery on $(uname -r) =="
/usr/local/bin/stockade-battery --stockade /usr/local/bin/stockade \
	--probe /usr/local/bin/stockade-probe "$@"
rc=$?
echo "battery exit status: $rc"
exit $rc
