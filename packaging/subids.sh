# The plugins' uid/gid range in /etc/subuid and /etc/subgid, for both packages: packaging/build.sh
# puts this file in place of the line `#STOCKADE_SUBIDS#` of the .deb's postinst and the rpm's
# %post (packaging/generated/), so the two cannot drift apart. 200000-265535 is the policy's
# default [identity] range (packaging/policy.toml). Functions only: each script calls them with
# its own failure rule (the postinst under `set -e` fails the configure; %post goes on with
# `|| :`, as rpm scriptlets do).

# Reserve the range for the `stockade` user, once (see the sysusers.d snippet).
stockade_reserve_subids() {
    grep -q '^stockade:200000:65536$' /etc/subuid 2>/dev/null ||
        usermod --add-subuids 200000-265535 stockade
    grep -q '^stockade:200000:65536$' /etc/subgid 2>/dev/null ||
        usermod --add-subgids 200000-265535 stockade
}

# Registering the range keeps useradd from handing it out later, but not a range handed out
# before: such a user could become a plugin's uid with newuidmap. The runtime refuses to launch
# while one exists (125, naming it); say so now, at the install.
stockade_warn_subid_overlaps() {
    for f in /etc/subuid /etc/subgid; do
        [ -r "$f" ] || continue
        awk -F: -v f="$f" '$1 != "stockade" && $1 != "root" && $1 != "0" && NF == 3 &&
            $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && $3 > 0 && $2 < 265536 && $2 + $3 > 200000 {
            printf "stockade: warning: %s delegates ids %d-%d to %s, inside the plugins\047 uid range 200000-265535: plugin launches are refused until that range is moved (or [identity] uid_first is)\n", f, $2, $2 + $3 - 1, $1 > "/dev/stderr"
        }' "$f"
    done
}
