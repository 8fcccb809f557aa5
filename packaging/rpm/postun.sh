# %postun of the stockade rpm: on erase ($1 = 0), remove run-time state; the user stays (see the
# .deb postrm for why). rpm has no purge: logs and state go with the erase, conffile edits are
# kept as /etc/stockade/policy.toml.rpmsave by rpm itself.
# On upgrade ($1 >= 1) a running daemon is restarted (Fedora's %systemd_postun_with_restart,
# written out), once the new binary has read the operator's policy: packaging/build.sh puts
# packaging/restart.sh (shared with the .deb's postinst) in place of the STOCKADE_RESTART token.
#STOCKADE_RESTART#
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ] 2>/dev/null; then
    stockade_restart_after_upgrade systemctl
fi
if [ "$1" = 0 ]; then
    rm -rf /var/lib/stockade /var/log/stockade
    rmdir /etc/stockade/trust 2>/dev/null || :
    # The runtime's configuration lock, not the admin's (see the .deb postrm).
    rm -f /etc/stockade/sources/.lock
    rmdir /etc/stockade/sources 2>/dev/null || :
fi
