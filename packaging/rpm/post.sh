# %post of the stockade rpm: the same steps as the .deb's postinst (users, directories, uid range).
systemd-sysusers stockade.conf || :
systemd-tmpfiles --create stockade.conf || :
if getent passwd stockade >/dev/null; then
    grep -q '^stockade:200000:65536$' /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 stockade || :
    grep -q '^stockade:200000:65536$' /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 stockade || :
fi
# A range handed out before the install overlapping the plugins' (see the .deb's postinst).
for f in /etc/subuid /etc/subgid; do
    [ -r "$f" ] || continue
    awk -F: -v f="$f" '$1 != "stockade" && $1 != "root" && $1 != "0" && NF == 3 &&
        $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && $3 > 0 && $2 < 265536 && $2 + $3 > 200000 {
        printf "stockade: warning: %s delegates ids %d-%d to %s, inside the plugins\047 uid range 200000-265535: plugin launches are refused until that range is moved (or [identity] uid_first is)\n", f, $2, $2 + $3 - 1, $1 > "/dev/stderr"
    }' "$f" || :
done
