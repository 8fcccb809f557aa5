# %preun of the stockade rpm: on erase ($1 = 0) stop and disable the units, as Fedora's
# %systemd_preun does (written out: cargo-generate-rpm expands no macros). An upgrade ($1 = 1)
# stops nothing: %postun restarts the running daemon once the new files are in place.
# `--no-reload`: %postun reloads once; `|| :` because a machine without a running systemd (a
# container, a chroot) must still be able to remove the package.
if [ "$1" = 0 ]; then
    systemctl --no-reload disable --now stockade-refresh.timer stockade-audit-rotate.timer \
        stockade.socket stockade.service \
        >/dev/null 2>&1 || :
fi
