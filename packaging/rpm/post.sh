# %post of the stockade rpm: the same steps as the .deb's postinst (users, directories, uid range).
# packaging/build.sh replaces the STOCKADE_SUBIDS token with packaging/subids.sh (shared with the
# .deb's postinst) and writes the result to packaging/generated/.
#STOCKADE_SUBIDS#

systemd-sysusers stockade.conf || :
systemd-tmpfiles --create stockade.conf || :
if getent passwd stockade >/dev/null; then
    stockade_reserve_subids || :
fi
# A range handed out before the install overlapping the plugins' (see packaging/subids.sh).
stockade_warn_subid_overlaps || :
