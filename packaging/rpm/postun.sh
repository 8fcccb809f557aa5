# %postun of the stockade rpm: on erase ($1 = 0), remove run-time state; the user stays (see the
# .deb postrm for why). rpm has no purge: logs and state go with the erase, conffile edits are
# kept as /etc/stockade/policy.toml.rpmsave by rpm itself.
if [ "$1" = 0 ]; then
    rm -rf /var/lib/stockade /var/log/stockade
    rmdir /etc/stockade/trust 2>/dev/null || :
    # The runtime's configuration lock, not the admin's (see the .deb postrm).
    rm -f /etc/stockade/sources/.lock
    rmdir /etc/stockade/sources 2>/dev/null || :
fi
