#!/usr/bin/env bash
# Build Stockade's .deb and .rpm into OUT_DIR, reproducibly:
#   packaging/build.sh OUT_DIR
# Steps: release build of `stockade` and the generator → man pages + completions generated from
# the clap tree into packaging/generated/ (+ docs/man/*.5 copied) → the maintainer scripts with
# packaging/subids.sh put in, into packaging/generated/{debian,rpm}/ → cargo deb → cargo
# generate-rpm.
#
# Reproducibility (two builds from different checkouts and target directories give the same
# bytes): SOURCE_DATE_EPOCH (default: the last commit's time) fixes every timestamp cargo-deb and
# cargo-generate-rpm write; --remap-path-prefix removes the checkout, cargo home and target paths
# that panic locations and debug strings would otherwise embed; symbols are stripped at link time
# (-C strip=symbols through the profile) so no path-bearing symbol tables remain. The generator
# writes no dates. Environment: CARGO_TARGET_DIR as usual; CARGO_HOME if not ~/.cargo.
set -euo pipefail
out=${1:?usage: packaging/build.sh OUT_DIR}
cd "$(dirname "$0")/.."
src=$(pwd -P)
mkdir -p "$out"
out=$(cd "$out" && pwd -P)

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
target_dir=${CARGO_TARGET_DIR:-$src/target}
mkdir -p "$target_dir"
target_dir=$(cd "$target_dir" && pwd -P)
export CARGO_TARGET_DIR=$target_dir
cargo_home=${CARGO_HOME:-$HOME/.cargo}

# One flag per line, joined with the 0x1f separator cargo expects in CARGO_ENCODED_RUSTFLAGS
# (paths may contain spaces). The target dir is remapped too: build scripts' OUT_DIR paths end
# up in include!() file names.
flags=(
  "--remap-path-prefix=$src=/usr/src/stockade"
  "--remap-path-prefix=$cargo_home=/usr/src/cargo"
  "--remap-path-prefix=$target_dir=/usr/src/target"
)
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}")
export CARGO_ENCODED_RUSTFLAGS
export CARGO_PROFILE_RELEASE_STRIP=symbols

cargo build --release --locked -p stockade-runtime -p stockade-pkg-gen

gen=packaging/generated
"$target_dir/release/stockade-pkg-gen" "$gen"
# The policy format page (and any other section-5 page) is written by hand in docs/man/.
shopt -s nullglob
man5=(docs/man/*.5)
if [ "${#man5[@]}" -gt 0 ]; then
  mkdir -p "$gen/man/man5"
  cp "${man5[@]}" "$gen/man/man5/"
fi
shopt -u nullglob

# The maintainer scripts, with the shared fragments put in place of their token lines
# (`#STOCKADE_SUBIDS#`: packaging/subids.sh, the uid range's functions; `#STOCKADE_RESTART#`:
# packaging/restart.sh, the restart after an upgrade): one text for the .deb's scripts and the
# rpm's scriptlets.
insert_fragment() { # TOKEN FRAGMENT IN OUT
  awk -v token="$1" -v frag="$2" '
    $0 == token {
      # getline is -1 on a missing or unreadable fragment: an error, never an empty insert (the
      # scripts would call functions that do not exist, and %post hides that behind `|| :`).
      while ((r = (getline l < frag)) > 0) print l
      if (r < 0) { print frag ": cannot be read" > "/dev/stderr"; exit 1 }
      close(frag); n++; next
    }
    { print }
    END { if (n != 1) { print FILENAME ": no single " token " line" > "/dev/stderr"; exit 1 } }
  ' "$3" >"$4"
}
mkdir -p "$gen/debian" "$gen/rpm"
insert_fragment '#STOCKADE_SUBIDS#' packaging/subids.sh packaging/debian/postinst "$gen/debian/postinst.1"
insert_fragment '#STOCKADE_RESTART#' packaging/restart.sh "$gen/debian/postinst.1" "$gen/debian/postinst"
rm "$gen/debian/postinst.1"
cp packaging/debian/postrm "$gen/debian/postrm"
chmod 755 "$gen/debian/postinst" "$gen/debian/postrm"
insert_fragment '#STOCKADE_SUBIDS#' packaging/subids.sh packaging/rpm/post.sh "$gen/rpm/post.sh"
insert_fragment '#STOCKADE_RESTART#' packaging/restart.sh packaging/rpm/postun.sh "$gen/rpm/postun.sh"

# The rpm takes the binary from here (a copy, so its mtime can be normalised below without
# touching cargo's own outputs); cargo-deb takes target/release/stockade and sets mtimes itself.
mkdir -p "$gen/bin"
cp "$target_dir/release/stockade" "$gen/bin/stockade"

# cargo-generate-rpm clamps file mtimes to SOURCE_DATE_EPOCH (keeps older ones), cargo-deb sets
# them all; so a checkout whose files predate the last commit would give another .rpm than a fresh
# copy. Give every packaged source file the same mtime (git ignores mtimes; cargo never rebuilds
# for an input that got older).
find README.md docs systemd packaging/policy.toml packaging/sysusers.d packaging/tmpfiles.d \
  packaging/debian "$gen" -type f -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

cargo deb --locked --no-build -p stockade-runtime -o "$out/"
cargo generate-rpm -p runtime --target-dir "$target_dir" -o "$out/"
ls -1 "$out"
