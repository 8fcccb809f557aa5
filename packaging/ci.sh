#!/usr/bin/env bash
# Packaging CI (issue 7), self-contained: installs its apt packages and pinned cargo tools if
# missing, builds the .deb and .rpm twice from two different checkouts/target dirs and compares
# their sha256, lints and installs them, uses the installed package as a user would, then purges
# and checks that nothing is left behind. Prints the time of each phase. The machine is left
# clean: the package is purged at the end, also on failure (trap).
#
#   packaging/ci.sh            # CI=true: nothing may be skipped
#
# Environment: CARGO_TARGET_DIR (the first build's target dir, as for every cargo command);
# STOCKADE_PKG_REPRO_DIR (where the second, reproducibility build keeps its copy of the sources
# and its own target dir; default $CARGO_TARGET_DIR/pkg-repro, kept between runs so only the
# workspace crates are rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
# Exposure of stockade.service under `systemd-analyze security --offline=true`, in tenths: issue 7's
# target of 2.0, met by running as `stockade` with three ambient capabilities instead of root
# (systemd/README.md, "Exposure", lists what is left and why each item is needed).
SECURITY_THRESHOLD=20

work=$(mktemp -d /tmp/stockade-pkg-ci.XXXXXX)
installed=0
cleanup() {
  local rc=$?
  if [ "$installed" = 1 ]; then
    echo "ci.sh: purging the test install" >&2
    dpkg --purge stockade >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

declare -a timings=()
phase_name=""
phase_start=0
phase() {
  if [ -n "$phase_name" ]; then
    timings+=("$(printf '%5ds  %s' $((SECONDS - phase_start)) "$phase_name")")
  fi
  phase_name=$1
  phase_start=$SECONDS
  printf '\n==> %s\n' "$1"
}
fail() { echo "ci.sh: FAIL: $*" >&2; exit 1; }

phase "tools: apt packages and pinned cargo tools"
# lintian: the .deb check; rpm: rpm -qlp/-K/--root install/-V; man-db: `man` renders the installed
# page; dpkg-dev: dpkg-shlibdeps for cargo-deb's $auto dependencies; binutils: strip;
# systemd: systemd-analyze verify/security (and systemd-sysusers/-tmpfiles for the postinst);
# python3 + util-linux: the demo; bash-completion: sourcing the installed bash completion.
PKGS=(lintian rpm man-db dpkg-dev binutils systemd python3 util-linux bash-completion)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
tool_version() { cargo "$1" --version 2>/dev/null | awk '{print $2}' | sed 's/^v//'; }
if [ "$(tool_version deb)" != "$CARGO_DEB_VERSION" ]; then
  cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
fi
if [ "$(tool_version generate-rpm)" != "$CARGO_GENERATE_RPM_VERSION" ]; then
  cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
fi
if dpkg-query -W -f='${Status}' stockade 2>/dev/null | grep -q 'installed'; then
  fail "a stockade package is already installed on this machine; refusing to touch it"
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

phase "build 1: release build + .deb + .rpm (this checkout)"
packaging/build.sh "$work/out1"
deb=$(ls "$work"/out1/stockade_*.deb)
rpmf=$(ls "$work"/out1/stockade-*.rpm)

phase "build 2: the same from a copy at another path, with another target dir"
repro=${STOCKADE_PKG_REPRO_DIR:-${CARGO_TARGET_DIR:-$root/target}/pkg-repro}
rm -rf "$repro/src"
mkdir -p "$repro/src" "$repro/target"
# Tracked and not-ignored files, as they are in the working tree (uncommitted edits included).
# (Files deleted but not yet committed are still listed by git: skip them.)
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do
    if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
  done | xargs -0 cp --parents -t "$repro/src"
[ -x "$repro/src/packaging/build.sh" ] || fail "copying the sources to $repro/src failed"
CARGO_TARGET_DIR="$repro/target" "$repro/src/packaging/build.sh" "$work/out2"

phase "reproducibility: sha256 of both builds"
(cd "$work/out1" && sha256sum -- *.deb *.rpm) | tee "$work/sums1"
(cd "$work/out2" && sha256sum -- *.deb *.rpm) >"$work/sums2"
if ! diff -u "$work/sums1" "$work/sums2"; then
  fail "the two builds differ (compare with diffoscope)"
fi
echo "byte-identical .deb and .rpm"

phase "lintian on the .deb (0 errors, 0 warnings)"
lintian --version
# --fail-on error,warning: any warning fails; every override is in
# packaging/debian/lintian-overrides with its justification.
lintian --fail-on error,warning --display-level '>=warning' --info "$deb"

phase "rpm: -qlp, -K, --root install, -V"
rpm -qip "$rpmf"
rpm -qlp "$rpmf" | tee "$work/rpm-files"
for f in /usr/bin/stockade /usr/share/man/man1/stockade.1 /usr/share/man/man1/stockade-exec.1 \
  /usr/lib/systemd/system/stockade.service /usr/lib/systemd/system/stockade.socket \
  /usr/lib/systemd/system/stockade-refresh.service /usr/lib/systemd/system/stockade-refresh.timer \
  /usr/lib/systemd/system/stockade-audit-rotate.service /usr/lib/systemd/system/stockade-audit-rotate.timer \
  /usr/share/doc/stockade/audit.md /usr/share/stockade/apparmor/stockade \
  /etc/stockade/policy.toml /usr/lib/sysusers.d/stockade.conf /usr/lib/tmpfiles.d/stockade.conf; do
  grep -qx "$f" "$work/rpm-files" || fail "the rpm lacks $f"
done
rpm -K "$rpmf"
rpmroot="$work/rpmroot"
mkdir -p "$rpmroot"
rpm --root "$rpmroot" --initdb
# --noscripts: the empty root has no /bin/sh, systemd-sysusers or usermod for %post; the same
# steps are exercised for real by the .deb install below.
rpm --root "$rpmroot" -i --nodeps --noscripts "$rpmf"
# --nodeps: the empty root cannot satisfy libc/systemd by construction; every file is checked.
rpm --root "$rpmroot" -V --nodeps stockade || fail "rpm -V: installed files differ from the package"
echo "rpm -V: every file matches"
configfiles=$(rpm --root "$rpmroot" -q --configfiles stockade)
[ "$configfiles" = /etc/stockade/policy.toml ] || fail "/etc/stockade/policy.toml is not the rpm's config file"
# The scriptlets' systemd steps, as the package carries them, run against a systemctl that only
# records its arguments: an erase stops and disables the units, an upgrade restarts a running
# daemon (the old binary would go on running; an earlier build's audit writer does not exclude
# this build's, docs/audit.md) and stops nothing. %postun's erase branch is not run here: it
# removes this host's /var/lib/stockade.
# The new binary's verdict on the operator's policy is a `stockade` that exits $LINT_RC: 0 (it
# loads: restart) or 65 (it no longer loads: the daemon is left running, with a warning).
fake="$work/fake-systemctl"
mkdir -p "$fake"
printf '#!/bin/sh\necho "$*" >>"%s/calls"\n' "$fake" >"$fake/systemctl"
printf '#!/bin/sh\nexit "${LINT_RC:-0}"\n' >"$fake/stockade"
chmod 755 "$fake/systemctl" "$fake/stockade"
scriptlet() { # TAG ARG [LINT_RC]: run the package's scriptlet TAG with $1 = ARG; print the
  # systemctl calls, then its stderr
  rm -f "$fake/calls"
  LINT_RC=${3:-0} PATH="$fake:$PATH" sh -c "$(rpm -qp --queryformat "%{$1}" "$rpmf")" "$1" "$2" \
    2>"$fake/stderr" || fail "%$1 $2 failed"
  cat "$fake/calls" "$fake/stderr" 2>/dev/null || true
}
calls=$(scriptlet PREUN 0)
[[ "$calls" == *"disable --now "*stockade.service* ]] || { echo "$calls"; fail "%preun 0 does not stop the units"; }
calls=$(scriptlet PREUN 1)
[ -z "$calls" ] || { echo "$calls"; fail "%preun 1 (an upgrade) calls systemctl"; }
calls=$(scriptlet POSTUN 1)
[[ "$calls" == *"try-restart stockade.service"* ]] || { echo "$calls"; fail "%postun 1 does not restart the daemon"; }
calls=$(scriptlet POSTUN 1 65)
[[ "$calls" != *"try-restart"* && "$calls" == *"was NOT restarted"* ]] ||
  { echo "$calls"; fail "%postun 1 restarted the daemon into a policy the new version refuses"; }
echo "rpm scriptlets: erase stops the units; upgrade restarts the daemon, unless the policy no longer loads"

phase "dpkg -i, then use it as a user would"
snapshot() {
  # Every path under the persistent trees a package may touch; volatile trees that other
  # processes on the machine change meanwhile are left out (they hold nothing this package
  # installs). /run is not compared: /run/stockade stays until reboot on purpose (packaging/README.md).
  find /etc /usr /var /opt /srv -xdev \
    \( -path /var/cache -o -path /var/log/apt -o -path /var/lib/apt -o -path /var/tmp \
       -o -path /var/lib/dpkg -o -path /var/log/journal \) -prune -o -print 2>/dev/null | sort
}
snapshot >"$work/before"
installed=1
dpkg -i "$deb"
dpkg -L stockade >"$work/deb-files"
# Outputs are captured before grepping: with pipefail, `grep -q` closing the pipe early could
# fail a check through SIGPIPE.
version=$(stockade --version)
echo "$version"
[[ "$version" == "stockade "* ]] || fail "stockade --version"
getent passwd stockade || fail "the stockade system user was not created"
grep -x 'stockade:200000:65536' /etc/subuid || fail "the plugins' uid range is not reserved in /etc/subuid"
grep -x 'stockade:200000:65536' /etc/subgid || fail "the plugins' gid range is not reserved in /etc/subgid"
for d in /var/lib/stockade /var/log/stockade /run/stockade /etc/stockade/trust /etc/stockade/sources; do
  [ -d "$d" ] || fail "$d was not created"
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' stockade)
[[ "$conffiles" == *" /etc/stockade/policy.toml "* ]] || fail "/etc/stockade/policy.toml is not a conffile"
man -P cat stockade >"$work/man-stockade" || fail "man stockade"
head -n 20 "$work/man-stockade"
grep -q 'stockade' "$work/man-stockade" || fail "man stockade"
man -P cat stockade-exec >"$work/man-exec" || fail "man stockade-exec"
grep -q -- 'policy' "$work/man-exec" || fail "man stockade-exec lacks --policy"
# The scheduled index refresh (seed 004): its units ship, not enabled, and its man page exists.
for f in /usr/lib/systemd/system/stockade-refresh.service /usr/lib/systemd/system/stockade-refresh.timer; do
  grep -qx "$f" "$work/deb-files" || fail "the .deb lacks $f"
done
man -P cat stockade-source-refresh >/dev/null || fail "man stockade-source-refresh"
# The audit log's rotation (docs/audit.md, "Rotation"): its units ship, not enabled, with their man
# page and the document they name.
for f in /usr/lib/systemd/system/stockade-audit-rotate.service /usr/lib/systemd/system/stockade-audit-rotate.timer \
  /usr/share/doc/stockade/audit.md; do
  grep -qx "$f" "$work/deb-files" || fail "the .deb lacks $f"
done
man -P cat stockade-audit-rotate >/dev/null || fail "man stockade-audit-rotate"
if ls docs/man/*.5 >/dev/null 2>&1; then
  for p in docs/man/*.5; do
    page=$(basename "$p" .5)
    man -P cat 5 "$page" >/dev/null || fail "man 5 $page"
  done
fi
bash -c 'source /usr/share/bash-completion/completions/stockade && complete -p stockade' ||
  fail "bash completion"
[ -s /usr/share/zsh/vendor-completions/_stockade ] || fail "zsh completion"
[ -s /usr/share/fish/vendor_completions.d/stockade.fish ] || fail "fish completion"
stockade exec --policy /etc/stockade/policy.toml -- /bin/true || fail "the shipped policy is rejected"
# The installed policy allows no rootless degradation: an unprivileged launch (what a unit stripped
# of its capabilities would do) is refused, naming the layer, instead of running without a uid of
# its own or cgroup limits.
rc=0
out=$(cd / && setpriv --reuid 65534 --regid 65534 --clear-groups stockade exec -- /bin/true 2>&1) || rc=$?
[ "$rc" = 125 ] && [[ "$out" == *distinct_uid* ]] ||
  { echo "$out"; fail "a rootless launch under the installed policy was not refused (exit $rc)"; }
STOCKADE_BIN=/usr/bin/stockade scripts/demo.sh

phase "dpkg -i again: an upgrade keeps state and the range, and restarts a running daemon"
# The postinst restarts a running daemon on an upgrade when systemd runs (it does not here: the
# scripts are checked by their text; the rpm's run above, with the same packaging/restart.sh);
# cargo-deb's own unconditional restart is off, and its prerm still stops the units on removal.
dpkg-deb -e "$deb" "$work/debian"
grep -q 'stockade_restart_after_upgrade deb-systemd-invoke' "$work/debian/postinst" ||
  fail "the postinst does not restart stockade.service on upgrade"
if grep -Eq 'deb-systemd-invoke .*(try-restart|restart) .*stockade' "$work/debian/postinst"; then
  fail "cargo-deb's unconditional restart after upgrade is in the postinst"
fi
grep -Eq 'deb-systemd-invoke stop .*stockade\.service' "$work/debian/prerm" ||
  fail "the prerm does not stop stockade.service on removal"
echo kept >/var/lib/stockade/upgrade-check
dpkg -i "$deb"
[ "$(cat /var/lib/stockade/upgrade-check)" = kept ] || fail "the upgrade lost /var/lib/stockade"
rm /var/lib/stockade/upgrade-check
[ "$(grep -c '^stockade:' /etc/subuid)" = 1 ] || fail "the upgrade registered the uid range again"
[ "$(grep -c '^stockade:' /etc/subgid)" = 1 ] || fail "the upgrade registered the gid range again"
stockade exec --policy /etc/stockade/policy.toml -- /bin/true || fail "stockade after the upgrade"
# What the restart after an upgrade asks first (packaging/restart.sh): the installed policy
# layers load (lint's 1 is findings only; 65/66 would keep the daemon on the earlier version).
rc=0
stockade policy lint >"$work/lint" 2>&1 || rc=$?
[ "$rc" -lt 64 ] || { cat "$work/lint"; fail "the installed policy does not load (lint exit $rc)"; }

phase "systemd-analyze verify + security on the installed units"
units=(/usr/lib/systemd/system/stockade.service /usr/lib/systemd/system/stockade.socket
  /usr/lib/systemd/system/stockade-refresh.service /usr/lib/systemd/system/stockade-refresh.timer
  /usr/lib/systemd/system/stockade-audit-rotate.service /usr/lib/systemd/system/stockade-audit-rotate.timer)
verify_out=$(systemd-analyze verify "${units[@]}" 2>&1) || { echo "$verify_out"; fail "systemd-analyze verify"; }
if [ -n "$verify_out" ]; then
  echo "$verify_out"
  fail "systemd-analyze verify printed diagnostics"
fi
echo "systemd-analyze verify: clean"
systemd-analyze security --offline=true --threshold=$SECURITY_THRESHOLD "${units[0]}" >"$work/security" ||
  { cat "$work/security"; fail "stockade.service exposure is above $SECURITY_THRESHOLD/10"; }
tail -n 1 "$work/security"

phase "dpkg --purge leaves nothing behind"
# An admin enabled both timers (not started: no systemd runs here). cargo-deb's snippets handle
# every unit in systemd/ (prerm: stopped on removal; postrm: masked on removal, their links and
# state purged on purge), so no link in timers.target.wants is left naming a unit that is gone —
# the snapshot below would see one.
systemctl enable stockade-refresh.timer stockade-audit-rotate.timer
[ -L /etc/systemd/system/timers.target.wants/stockade-audit-rotate.timer ] ||
  fail "systemctl enable made no link for stockade-audit-rotate.timer"
grep -Eq 'deb-systemd-invoke stop .*stockade-audit-rotate\.timer' "$work/debian/prerm" ||
  fail "the prerm does not stop stockade-audit-rotate.timer on removal"
dpkg --purge stockade
installed=0
snapshot >"$work/after"
# What may stay, and why (see packaging/README.md):
#  - /etc/subuid- and /etc/subgid-: usermod's backup copies (like /etc/passwd- for sysusers);
#  - the stockade user/group stay in the passwd/group/shadow/subuid files (modified, not new).
allowed='^(/etc/subuid-|/etc/subgid-)$'
left=$(comm -13 "$work/before" "$work/after" | grep -Ev "$allowed" || true)
if [ -n "$left" ]; then
  echo "$left"
  fail "files left behind after purge"
fi
for f in /usr/bin/stockade /etc/stockade /var/lib/stockade /var/log/stockade; do
  [ ! -e "$f" ] || fail "$f still exists after purge"
done
echo "purge: nothing left but the documented user and uid range"

phase "done"
echo
echo "packaging/ci.sh timings:"
printf '%s\n' "${timings[@]}"
printf '%5ds  total\n' "$SECONDS"
