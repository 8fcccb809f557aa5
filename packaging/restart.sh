# Restart a running daemon after an upgrade, for both packages: packaging/build.sh puts this file
# in place of the line `#STOCKADE_RESTART#` of the .deb's postinst and the rpm's %postun
# (packaging/generated/). Called with the command that restarts a unit (`deb-systemd-invoke`,
# which honours policy-rc.d, or `systemctl`).
#
# Why restart: the daemon would go on running the old binary, and a writer of an earlier build and
# one of this build need not exclude each other on the audit log (docs/audit.md, "The lock").
# Why check first: a new version may refuse a policy the old one loaded (a stricter reading, listed
# in the release's docs); restarted into it, the daemon would stop and stay down. So the operator's
# policy layers are read by the new binary first (`stockade policy lint`: 65 invalid, 66
# unreadable; 1 only means findings, which load), and if they no longer load the running daemon
# is left running the earlier version, loudly. Not the socket: restarting it would drop the
# agents' pending connections, and it serves the new daemon as it is.
stockade_restart_after_upgrade() {
    rc=0
    stockade policy lint >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ge 64 ]; then
        echo "stockade: warning: the policy in /etc/stockade does not load under this version (\`stockade policy lint\` exits $rc and says why): the running daemon was NOT restarted and runs the previous version until the policy is fixed and stockade.service is restarted" >&2
        return 0
    fi
    "$@" try-restart stockade.service >/dev/null 2>&1 || :
}
