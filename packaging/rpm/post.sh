# %post of the stockade rpm: the same steps as the .deb's postinst (users, directories, uid range).
systemd-sysusers stockade.conf || :
systemd-tmpfiles --create stockade.conf || :
if getent passwd stockade >/dev/null; then
    grep -q '^stockade:200000:65536$' /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 stockade || :
    grep -q '^stockade:200000:65536$' /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 stockade || :
fi
