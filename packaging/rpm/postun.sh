# %postun of the stockade rpm: on erase ($1 = 0), remove run-time state; the user stays (see the
# .deb postrm for why). rpm has no purge: logs and state go with the erase, conffile edits are
# kept as /etc/stockade/policy.toml.rpmsave by rpm itself.
# On upgrade ($1 >= 1) a running daemon is restarted (Fedora's %systemd_postun_with_restart,
# written out): it would otherwise go on running the old binary, and a writer of an earlier build
# and one of this build need not exclude each other on the audit log (docs/audit.md, "The lock").
# The .deb does the same (cargo-deb's `try-restart` in its postinst). Not the socket: restarting
# it would drop the agents' pending connections, and it serves the new daemon as it is.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ] 2>/dev/null; then
    systemctl try-restart stockade.service >/dev/null 2>&1 || :
fi
if [ "$1" = 0 ]; then
    rm -rf /var/lib/stockade /var/log/stockade
    rmdir /etc/stockade/trust 2>/dev/null || :
    # The runtime's configuration lock, not the admin's (see the .deb postrm).
    rm -f /etc/stockade/sources/.lock
    rmdir /etc/stockade/sources 2>/dev/null || :
fi
