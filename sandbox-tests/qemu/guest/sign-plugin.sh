#!/bin/sh
# shellcheck shell=dash
# sign-plugin.sh WORKDIR PACKAGE TRUSTDIR: what a developer and an operator do
# before a plugin runs, for the guest checks (pkgrun.sh, systemd-check.sh): a
# throwaway CA (root, intermediate, developer key and certificate) made in
# WORKDIR, the bench plugin (/usr/local/libexec/stockade-vm/plugin) packed and
# signed into PACKAGE, the root key pinned and a signed revocation list written
# in TRUSTDIR. On failure prints the failing command's output and exits 1.
S=/usr/local/bin/stockade
[ -x "$S" ] || S=/usr/bin/stockade
PLUGIN=/usr/local/libexec/stockade-vm/plugin
[ $# = 3 ] || {
	echo "usage: sign-plugin.sh WORKDIR PACKAGE TRUSTDIR"
	exit 64
}
work=$1 package=$2 trust=$3
step() {
	"$@" >"$work/sign.out" 2>&1 || {
		echo "sign-plugin: $* failed:"
		sed 's/^/    /' "$work/sign.out"
		exit 1
	}
}
mkdir -p "$work" "$trust" || exit 1
cd "$work" || exit 1
step "$S" ca init -o root --name "VM Root"
step "$S" ca init -o int --parent root --name "VM Intermediate"
step "$S" keygen -o dev
step "$S" ca issue --ca int --pub dev.pub --scope any -o dev.cert
step "$S" pack "$PLUGIN" --key dev.key --devcert dev.cert --intcert int/ca.cert -o "$package"
step cp root/ca.pub "$trust/vm-root.pub"
step "$S" ca revoke --ca root -o "$trust/revocations.json"
