#!/bin/sh
# shellcheck shell=dash
# Guest check of `run-matrix.sh --systemd`, run by systemd (pid 1) as
# stockade-vm-check.service: the shipped stockade.socket and stockade.service
# (systemd/ in the repository, unchanged) on Debian's 6.1 kernel, pure cgroup
# v2, under the systemd of this host's Debian, as an agent meets them:
#   - the package's setup ran (sysusers/tmpfiles snippets): the `stockade` user,
#     the socket 0660 root:stockade, the daemon not started before a client;
#   - an agent connection starts the daemon (socket activation), which is
#     `active` only after its READY=1 (Type=notify); a signed package is loaded
#     and a hook called through it;
#   - the daemon runs as `stockade` with exactly CAP_SETUID, CAP_SETGID and
#     CAP_KILL (effective, permitted, ambient and bounding), no_new_privs;
#   - the plugin's program runs under its own uid from the policy's range, with
#     no capabilities, seccomp filtering and no_new_privs, in a cgroup below the
#     service's delegated one;
#   - two crashes quarantine the plugin, recorded in the service's
#     StateDirectory; after `systemctl restart stockade.service` loading the
#     package finds it still quarantined, until plugin_restart;
#   - the audit log in the service's LogsDirectory verifies; the shipped
#     stockade-audit-rotate.service rotates it and the files verify as one chain;
#   - `systemctl stop` leaves no plugin process, no sandbox cgroup, no socket.
# Prints PASS/FAIL lines, then "systemd-<release>: N passed, N failed" and the
# harness's STOCKADE-VM-EXIT line, and powers the machine off.
# shellcheck source=/dev/null # written by run-matrix.sh
. /etc/stockade-vm/run.env
S=/usr/bin/stockade
H=/usr/local/libexec/stockade-vm
W=/srv/stockade-vm
SOCK=/run/stockade/stockade.sock
passed=0
failed=0

# check NAME COMMAND...: one test; the command's output is shown when it fails.
check() {
	name=$1
	shift
	if "$@" >/tmp/check.out 2>&1; then
		echo "PASS $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		sed 's/^/    /' /tmp/check.out
		failed=$((failed + 1))
	fi
}
finish() {
	echo "systemd-$(uname -r): $passed passed, $failed failed"
	echo "STOCKADE-VM-EXIT=$([ $failed = 0 ] && echo 0 || echo 1) nonce=$STOCKADE_VM_NONCE"
	sync
	poweroff -f
}
echo "== shipped units under systemd $(systemctl --version | sed -n 1p | cut -d' ' -f2) on $(uname -r) =="
check setup-ran sh -c 'systemctl is-active stockade-vm-setup.service && id stockade'
check socket-listening sh -c "systemctl is-active stockade.socket && [ -S $SOCK ] &&
	[ \"\$(stat -c '%a %U:%G' $SOCK)\" = '660 root:stockade' ] || { ls -l $SOCK; false; }"
check daemon-not-started-before-a-client sh -c '! systemctl is-active stockade.service'

# The bench plugin signed by a throwaway CA, its root pinned where the shipped
# unit reads it (/etc/stockade/trust), an audit file in its LogsDirectory.
mkdir -p "$W" /srv/plugins /etc/stockade/policy.d
cd "$W" || exit 1
if ! "$H/sign-plugin.sh" "$W/ca" /srv/plugins/bench.stockade /etc/stockade/trust; then
	echo "FAIL prepare"
	failed=$((failed + 1))
	finish
fi
chmod 0644 /srv/plugins/bench.stockade
printf 'version = 1\n[audit]\nfile = "/var/log/stockade/audit.log"\n' >/etc/stockade/policy.d/50-audit.toml
# The serve config the test drop-in names: quick backoff, two crashes quarantine.
printf 'version = 1\n[restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\njitter_percent = 0\n[quarantine]\nmax_crashes = 2\nwindow_ms = 600000\n' \
	>/etc/stockade/serve.toml
chmod 0644 /etc/stockade/serve.toml

# The agent: load, call, status, each answered before the next is sent.
cat >requests <<'REQ'
{"jsonrpc":"2.0","id":1,"method":"plugin_load","params":{"package":"/srv/plugins/bench.stockade"}}
{"jsonrpc":"2.0","id":2,"method":"hook_invoke","params":{"hook":"on:bench.echo","payload":"ping-from-vm"}}
{"jsonrpc":"2.0","id":3,"method":"plugin_status","params":{"name":"bench"}}
REQ
"$H/sockcall" "$SOCK" 60000 <requests >agent.out 2>&1
check agent-session sh -c "cat agent.out; grep -q '\"id\":3' agent.out ||
	{ systemctl status --no-pager --lines=0 stockade.service; tail -20 /run/stockade-serve.log; false; }"
check plugin-loaded-ready sh -c "grep '\"id\":1[,}]' agent.out | grep -q '\"state\":\"ready\"' ||
	{ cat agent.out; grep -v 'warning: layer' /run/stockade-serve.log | head -20; false; }"
# Debian's 6.1 has Landlock ABI 2: the TCP restriction (ABI 4) is a degradation the policy
# allows, and the daemon's log says so for the plugin.
check degradation-logged grep -q 'plugin bench: warning: layer `landlock_network` is not enforced (capabilities mode' /run/stockade-serve.log
check hook-answered sh -c "grep '\"id\":2[,}]' agent.out | grep -q 'ping-from-vm'"
check daemon-active-after-ready-notify sh -c 'systemctl is-active stockade.service'

main=$(systemctl show -p MainPID --value stockade.service)
uid=$(id -u stockade)
st=/proc/$main/status
check daemon-runs-as-stockade sh -c "grep -E '^(Uid|Gid)' $st &&
	for v in \$(sed -n 's/^Uid:[[:space:]]*//p' $st); do [ \$v = $uid ] || exit 1; done"
check daemon-capabilities-exactly-setuid-setgid-kill sh -c "grep -E '^Cap' $st;
	for c in CapPrm CapEff CapBnd CapAmb; do
		[ \"\$(sed -n \"s/^\$c:[[:space:]]*//p\" $st)\" = 00000000000000e0 ] || exit 1
	done; [ \"\$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' $st)\" = 1 ]"

# The plugin's program (the pid plugin_status names) and the sandbox's init,
# its parent.
prog=$(grep '"id":3[,}]' agent.out | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
init=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$prog/status" 2>/dev/null)
ps=/proc/$prog/status
check plugin-identity-and-layers sh -c "echo program $prog, sandbox init $init \$(cat /proc/$init/comm); grep '\"id\":3[,}]' agent.out; [ -n '$prog' ] && [ -f $ps ] && grep -E '^(Uid|Cap|NoNewPrivs|Seccomp)' $ps && cat /proc/$prog/cgroup &&
	u=\$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' $ps) && [ \$u -ge 200000 ] && [ \$u -lt 265536 ] &&
	[ \"\$(sed -n 's/^CapEff:[[:space:]]*//p' $ps)\" = 0000000000000000 ] &&
	[ \"\$(sed -n 's/^CapBnd:[[:space:]]*//p' $ps)\" = 0000000000000000 ] &&
	[ \"\$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' $ps)\" = 1 ] &&
	[ \"\$(sed -n 's/^Seccomp:[[:space:]]*//p' $ps)\" = 2 ] &&
	grep -q '^0::/system.slice/stockade.service/' /proc/$prog/cgroup"

# A crash loop under the real unit: two crashes quarantine the plugin, the
# record lands in the service's StateDirectory, and a restart of the service
# (what Restart=on-failure does after a crash of the daemon) does not run the
# package again until an agent sends plugin_restart.
call() {
	printf '%s\n' "$@" | "$H/sockcall" "$SOCK" 30000
}
# until SECONDS COMMAND...: retry once a second.
until_ok() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 1
		n=$((n - 1))
	done
	return 1
}
ready() {
	call '{"jsonrpc":"2.0","id":9,"method":"plugin_status","params":{"name":"bench"}}' |
		grep -q '"state":"ready"'
}
recorded() {
	grep -q '"bench"' /var/lib/stockade/quarantine.json 2>/dev/null
}
lifted() {
	cat lift.out && until_ok 30 ready && ! recorded
}
crash='{"jsonrpc":"2.0","id":5,"method":"hook_invoke","params":{"hook":"on:bench.echo","payload":"crash"}}'
# Ready *again*: a status read before the daemon has seen the first crash still says the old
# incarnation is ready (its answer to the hook may come first), and a second crash sent to that
# dying process is no second crash — the check then waited for a quarantine that never came.
relaunched() {
	call '{"jsonrpc":"2.0","id":9,"method":"plugin_status","params":{"name":"bench"}}' >status.out
	grep -q '"state":"ready"' status.out && grep -q '"restarts":1[,}]' status.out
}
call "$crash" >crash1.out 2>&1
check crash-restarts-the-plugin until_ok 30 relaunched
call "$crash" >crash2.out 2>&1
check second-crash-quarantines-on-disk until_ok 30 recorded
systemctl restart stockade.service
call '{"jsonrpc":"2.0","id":6,"method":"plugin_load","params":{"package":"/srv/plugins/bench.stockade"}}' >reload.out 2>&1
check restarted-daemon-keeps-it-quarantined sh -c "cat reload.out; grep '\"id\":6[,}]' reload.out | grep -q '\"state\":\"quarantined\"'"
call '{"jsonrpc":"2.0","id":7,"method":"plugin_restart","params":{"name":"bench"}}' >lift.out 2>&1
check plugin-restart-lifts-it lifted

systemctl stop stockade.service stockade.socket
check stop-leaves-nothing sh -c "[ ! -d /proc/$init ] && [ ! -d /proc/$prog ] && [ ! -e $SOCK ] &&
	! find /sys/fs/cgroup -type d -name 'stockade-[0-9]*' | grep . &&
	[ ! -d /sys/fs/cgroup/system.slice/stockade.service ] &&
	! systemctl is-active stockade.service"
check audit-log-verifies sh -c "ls -l /var/log/stockade && $S audit verify /var/log/stockade/audit.log &&
	grep -q '\"event\":\"launch\"' /var/log/stockade/audit.log"
# The shipped rotation unit, unchanged: as the `stockade` user under its hardening it leaves a log
# below its --min-size alone; with only its size threshold taken away by a drop-in it rotates, and
# the rotated records and the new log verify as one chain (docs/audit.md, "Rotation").
check audit-rotate-unit-leaves-a-small-log sh -c "systemctl start stockade-audit-rotate.service &&
	! ls /var/log/stockade/audit.log.2* 2>/dev/null"
mkdir -p /etc/systemd/system/stockade-audit-rotate.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/stockade audit rotate\n' \
	>/etc/systemd/system/stockade-audit-rotate.service.d/test-no-min-size.conf
systemctl daemon-reload
check audit-rotate-unit-rotates sh -c "systemctl start stockade-audit-rotate.service &&
	ls -l /var/log/stockade && $S audit verify --follow --require-head /var/log/stockade/audit.log &&
	grep -q '\"event\":\"rotation\"' /var/log/stockade/audit.log"
echo "-- the daemon's log (stderr) --"
sed 's/^/    /' /run/stockade-serve.log
finish
