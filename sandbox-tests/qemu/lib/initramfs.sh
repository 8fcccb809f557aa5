# shellcheck shell=bash
# The initramfs builder. The guest tree is a Debian-like merged-/usr layout
# (/bin -> usr/bin, /lib -> usr/lib, /lib64 -> usr/lib64, /sbin -> usr/sbin)
# because the sandbox binds exactly those system paths read-only into the
# plugin's root. Busybox (static) provides /bin/sh and the tools; host files
# are added at chosen guest paths, with the shared libraries of dynamically
# linked ELF files (found with ldd, dynamic loader included) so that the
# runtime's Rust binaries run unchanged. The archive is an uncompressed newc
# cpio: under TCG, unpacking gzip in the guest costs more than qemu reading a
# larger file.

# Staging directory being filled (set by initramfs_begin).
STAGE=""

initramfs_begin() {
	STAGE=$1
	mkdir -p "$STAGE"/usr/{bin,sbin,lib,lib64,local/bin,local/libexec/stockade-vm} \
		"$STAGE"/{dev,proc,sys,tmp,run,etc/stockade-vm,root,newroot,var/tmp}
	ln -s usr/bin "$STAGE/bin"
	ln -s usr/lib "$STAGE/lib"
	ln -s usr/lib64 "$STAGE/lib64"
	ln -s usr/sbin "$STAGE/sbin"
	chmod 1777 "$STAGE/tmp" "$STAGE/var/tmp"
	chmod 0700 "$STAGE/root"
	# The kernel opens /dev/console for init before anything is mounted;
	# without the node init starts with no stdio (it re-opens the console
	# after mounting devtmpfs, so this is only for early messages).
	mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || true

	cp /bin/busybox "$STAGE/usr/bin/busybox"
	local applet
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] && continue
		ln -s busybox "$STAGE/usr/bin/$applet"
	done

	cat >"$STAGE/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PW
	cat >"$STAGE/etc/group" <<'GR'
root:x:0:
tty:x:5:
shadow:x:42:
nogroup:x:65534:
GR
	# A secret only root can read natively: the read-shadow probe's control.
	cat >"$STAGE/etc/shadow" <<'SH'
root:*:20000:0:99999:7:::
nobody:*:20000:0:99999:7:::
SH
	chmod 0640 "$STAGE/etc/shadow"
	chgrp 42 "$STAGE/etc/shadow" 2>/dev/null || true
	echo "stockade-vm" >"$STAGE/etc/hostname"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$STAGE/etc/hosts"
	: >"$STAGE/etc/machine-id" # filled at boot by /init
	install -m 0755 "$HERE/guest/init" "$STAGE/init"
}

# Resolve a guest path inside the staging tree. Leading /bin, /lib... are
# relative symlinks inside STAGE, so the host follows them into usr/.
stage_path() {
	printf '%s%s' "$STAGE" "$1"
}

# Copy the shared libraries (and loader) a dynamic ELF file needs to the same
# paths in the guest. ldd paths may go through /lib or /lib64 symlinks; the
# merged layout makes those resolve in the guest too.
add_libs_of() {
	local file=$1 lib real
	# A static binary or a script: nothing to add. (ldd exits non-zero.)
	ldd "$file" >/dev/null 2>&1 || return 0
	while read -r lib; do
		[ -n "$lib" ] || continue
		[ -e "$(stage_path "$lib")" ] && continue
		real=$(readlink -f "$lib")
		mkdir -p "$(dirname "$(stage_path "$real")")" "$(dirname "$(stage_path "$lib")")"
		cp -L "$real" "$(stage_path "$real")"
		[ "$real" = "$lib" ] || [ -e "$(stage_path "$lib")" ] || ln -s "$real" "$(stage_path "$lib")"
	done < <(ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# add_file HOSTPATH GUESTPATH: copy a file (or a directory tree) into the guest.
add_file() {
	local host=$1 guest=$2 dst f
	case "$guest" in
	/*) ;;
	*) die "$EXIT_USAGE" "guest path must be absolute: $guest" ;;
	esac
	[ -e "$host" ] || die "$EXIT_USAGE" "no such host file: $host"
	dst=$(stage_path "$guest")
	mkdir -p "$(dirname "$dst")"
	rm -f "$dst" # may be a busybox applet symlink
	cp -a -L "$host" "$dst" || die "$EXIT_BUILD" "cannot copy $host to $guest"
	if [ -d "$dst" ]; then
		while IFS= read -r -d '' f; do add_elf "$f"; done < <(find "$dst" -type f -perm -u+x -print0)
	elif [ -x "$dst" ]; then
		add_elf "$dst"
	fi
}

# Prepare a staged executable: drop the debug info of ELF files (a debug
# build of the runtime is mostly DWARF, and every byte of the initramfs is
# copied by the emulated CPU; symbols stay, so backtraces still name
# functions), then bring its shared libraries along.
add_elf() {
	local f=$1
	[ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || return 0
	if [ "$STRIP" = 1 ] && command -v strip >/dev/null; then
		strip --strip-debug "$f" 2>/dev/null || say "warning: could not strip $f (kept as is)"
	fi
	add_libs_of "$f"
}

# add_modules NAME...: copy kernel modules and their dependencies (from the
# cached package's modules.dep) into the guest and index them, so that init
# can modprobe them. Everything the sandbox itself uses is built into Debian's
# kernel; modules are only for what the probes' native controls need, such as
# AF_VSOCK (vsock.ko), which a Debian host would autoload on first use.
add_modules() {
	[ $# -gt 0 ] || return 0
	if [ -z "$KMODS" ] || [ ! -f "$KMODS/modules.dep" ]; then
		die "$EXIT_USAGE" "--module needs the cached Debian kernel's modules (not available with --kernel)"
	fi
	local name want line f dst=/lib/modules/$KVER
	for name in "$@"; do
		want="$(printf '%s' "$name" | tr _ -).ko"
		line=$(awk -v w="$want" '{ p = $1; sub(/:$/, "", p); n = p; sub(/.*\//, "", n); gsub(/_/, "-", n)
			if (n == w) { print; exit } }' "$KMODS/modules.dep")
		[ -n "$line" ] || die "$EXIT_USAGE" "--module $name: no such module in $KMODS"
		for f in $(printf '%s' "$line" | tr -d ':'); do
			mkdir -p "$(dirname "$(stage_path "$dst/$f")")"
			cp "$KMODS/$f" "$(stage_path "$dst/$f")"
		done
	done
	cp "$KMODS"/modules.builtin* "$KMODS/modules.order" "$(stage_path "$dst")/" 2>/dev/null
	/bin/busybox depmod -b "$STAGE" "$KVER" || die "$EXIT_BUILD" "depmod in the initramfs failed"
}

# initramfs_finish OUT.cpio: write the archive (entries sorted, owned by root).
initramfs_finish() {
	local out=$1
	(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 >"$out") || die "$EXIT_BUILD" "cpio failed"
}
