# shellcheck shell=bash disable=SC2034 # sets globals for run-matrix.sh
# Provisioning: host tools from apt, and Debian's 6.1 kernel image unpacked into
# the cache without installing it (installing a linux-image package would run
# initramfs and bootloader hooks on the host). Idempotent and non-interactive:
# nothing is downloaded when the cache already holds the resolved version.

# Packages whose commands/files the harness needs, as "test-path:package".
HOST_NEEDS=(
	/usr/bin/qemu-system-x86_64:qemu-system-x86
	/bin/busybox:busybox-static
	/usr/bin/cpio:cpio
	/usr/bin/gcc:gcc
	/usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
	/usr/include/linux/landlock.h:linux-libc-dev
)

apt_get() {
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@" </dev/null
}

provision_host_tools() {
	local missing=() entry
	for entry in "${HOST_NEEDS[@]}"; do
		[ -e "${entry%%:*}" ] || missing+=("${entry#*:}")
	done
	# busybox (dynamic) may sit at /bin/busybox instead of busybox-static.
	if [ -e /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then
		missing+=(busybox-static)
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$NO_PROVISION" = 1 ] && die "$EXIT_UNAVAILABLE" "missing packages: ${missing[*]} (and --no-provision given)"
	[ "$(id -u)" = 0 ] || die "$EXIT_UNAVAILABLE" "missing packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}"
	say "installing ${missing[*]}"
	apt_get install -y --no-install-recommends "${missing[@]}" >&2 ||
		{ apt_get update >&2 && apt_get install -y --no-install-recommends "${missing[@]}" >&2; } ||
		die "$EXIT_UNAVAILABLE" "apt-get install ${missing[*]} failed"
}

# Prints the name of the versioned kernel package linux-image-amd64 depends on
# (e.g. linux-image-6.1.0-56-amd64).
resolve_kernel_package() {
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1[.0-9-]*-amd64$/ { print $2; exit }')
	if [ -z "$pkg" ] && [ "$NO_PROVISION" != 1 ] && [ "$(id -u)" = 0 ]; then
		apt_get update >&2 || true
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1[.0-9-]*-amd64$/ { print $2; exit }')
	fi
	printf '%s' "$pkg"
}

# Sets KERNEL (path to vmlinuz) and KERNEL_DESC. Uses --kernel when given.
provision_kernel() {
	if [ -n "$KERNEL" ]; then
		[ -r "$KERNEL" ] || die "$EXIT_USAGE" "--kernel $KERNEL is not readable"
		KERNEL_DESC="$KERNEL (given)"
		KVER="" KMODS="" # --module is unavailable with --kernel
		return 0
	fi
	local pkg ver dir deb lockfd
	# Two runs sharing a cache must not unpack over each other.
	exec {lockfd}>"$CACHE/kernel/.lock"
	flock "$lockfd"
	pkg=$(resolve_kernel_package)
	if [ -z "$pkg" ]; then
		# Offline: fall back to whatever 6.1 kernel the cache already holds.
		dir=$(find "$CACHE/kernel" -mindepth 2 -maxdepth 2 -name .complete-v2 -path '*/linux-image-6.1*' 2>/dev/null | sort -V | tail -1)
		dir=${dir%/.complete-v2}
		[ -n "$dir" ] || die "$EXIT_UNAVAILABLE" "cannot resolve linux-image-amd64's 6.1 kernel with apt-cache, and the cache $CACHE/kernel is empty"
		say "apt-cache cannot resolve linux-image-amd64; using cached $(basename "$dir")"
	else
		ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
		if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
			die "$EXIT_UNAVAILABLE" "apt has no candidate for $pkg"
		fi
		dir="$CACHE/kernel/${pkg}_$ver"
		if [ ! -f "$dir/.complete-v2" ]; then
			say "fetching $pkg $ver (apt-get download, not installed)"
			local tmp
			tmp=$(mktemp -d "$CACHE/kernel/.dl.XXXXXX")
			# apt-get download drops privileges to _apt, which cannot
			# write under /root; download as the caller instead.
			(cd "$tmp" && apt_get -o APT::Sandbox::User="$(id -un)" download "$pkg=$ver" >&2) ||
				die "$EXIT_UNAVAILABLE" "apt-get download $pkg=$ver failed"
			deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -1)
			mkdir -p "$tmp/x"
			dpkg-deb -x "$deb" "$tmp/x" || die "$EXIT_UNAVAILABLE" "dpkg-deb -x $deb failed"
			rm -rf "$dir"
			mkdir -p "$dir/root/lib"
			# The image, its config (for the feature audit in the
			# README) and the modules tree, indexed by busybox depmod
			# (the package leaves modules.dep to its postinst), from
			# which --module picks what the guest loads.
			mv "$tmp"/x/boot "$dir/boot"
			if [ -d "$tmp/x/lib/modules" ]; then
				mv "$tmp/x/lib/modules" "$dir/root/lib/modules"
			elif [ -d "$tmp/x/usr/lib/modules" ]; then
				mv "$tmp/x/usr/lib/modules" "$dir/root/lib/modules"
			fi
			local kv
			for kv in "$dir"/root/lib/modules/*; do
				/bin/busybox depmod -b "$dir/root" "$(basename "$kv")" ||
					die "$EXIT_UNAVAILABLE" "depmod of $kv failed"
			done
			printf '%s %s\n' "$pkg" "$ver" >"$dir/.complete-v2"
			rm -rf "$tmp"
		fi
	fi
	KERNEL=$(find "$dir/boot" -maxdepth 1 -name 'vmlinuz-*' | head -1)
	[ -n "$KERNEL" ] || die "$EXIT_UNAVAILABLE" "no boot/vmlinuz-* in $dir"
	KERNEL_DESC="$(cat "$dir/.complete-v2" 2>/dev/null || basename "$dir") ($KERNEL)"
	KVER=${KERNEL##*/vmlinuz-}
	KMODS="$dir/root/lib/modules/$KVER"
	exec {lockfd}>&-
}

# Builds the static C helpers (landlock-abi, x32-getpid, nscheck) into the
# cache, keyed by the hash of their sources; sets HELPERS_DIR. Two runs sharing
# a cache (tests/test-run-matrix.sh boots two at a time) must not write the
# same binary at once: the second waits for the first's lock, then finds them
# complete.
build_helpers() {
	local src=$HERE/helpers hash f lockfd
	hash=$(cat "$src"/*.c | sha256sum | cut -c1-16)
	HELPERS_DIR="$CACHE/helpers/$hash"
	[ -f "$HELPERS_DIR/.complete" ] && return 0
	exec {lockfd}>"$CACHE/helpers/.lock"
	flock "$lockfd"
	if [ ! -f "$HELPERS_DIR/.complete" ]; then
		mkdir -p "$HELPERS_DIR"
		for f in "$src"/*.c; do
			gcc -static -O2 -Wall -Wextra -Werror -o "$HELPERS_DIR/$(basename "$f" .c)" "$f" ||
				die "$EXIT_BUILD" "cannot compile $f"
		done
		touch "$HELPERS_DIR/.complete"
	fi
	exec {lockfd}>&-
}

# Builds the benchmark's static plugin (sandbox-tests/bench/plugin: handshake,
# then echo every hook) into the cache for the guest's package run, keyed by
# the hash of its source; sets PLUGIN_SRC and PLUGIN_BIN.
build_plugin() {
	PLUGIN_SRC=$(cd "$HERE/../bench/plugin" && pwd) || die "$EXIT_BUILD" "no sandbox-tests/bench/plugin"
	local hash
	hash=$(sha256sum <"$PLUGIN_SRC/bench-plugin.c" | cut -c1-16)
	PLUGIN_BIN="$CACHE/helpers/plugin-$hash/entrypoint"
	[ -f "$PLUGIN_BIN" ] && return 0
	local lockfd
	exec {lockfd}>"$CACHE/helpers/.lock"
	flock "$lockfd"
	if [ ! -f "$PLUGIN_BIN" ]; then
		mkdir -p "$(dirname "$PLUGIN_BIN")"
		gcc -static -O2 -Wall -Wextra -Werror -o "$PLUGIN_BIN.tmp" "$PLUGIN_SRC/bench-plugin.c" ||
			die "$EXIT_BUILD" "cannot compile $PLUGIN_SRC/bench-plugin.c"
		mv "$PLUGIN_BIN.tmp" "$PLUGIN_BIN"
	fi
	exec {lockfd}>&-
}
