#!/usr/bin/env bash
# Checks that vendor/glommio-patches/*.patch, applied in order to glommio
# 0.9.0 as published on crates.io, give exactly vendor/glommio. Exits
# non-zero, showing the difference, if they do not.
#
# The published crate is trimmed first as vendor/glommio was when it was
# vendored (benches, liburing's tests, examples, man pages and packaging;
# the [[bench]] tables of Cargo.toml). Left out of the comparison: the
# local packaging that is not part of the series, i.e. vendor/glommio's
# Cargo.lock and the tail of its Cargo.toml from the "# ws-gateway local
# packaging" line (the [workspace] table), and any target/ directory.
#
# The .crate comes from cargo's registry cache if present, else from
# target/glommio-0.9.0.crate, else it is downloaded from static.crates.io
# into target/; its sha256 is the crates.io index's checksum.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
vendor=$here/glommio
patches=$here/glommio-patches
sha256=e1f8bc1fce949d18098dc0a4e861314e40351a0144ebf61e59bdb5254a2273b2
marker='# ws-gateway local packaging'

crate=
for c in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/glommio-0.9.0.crate "$root/target/glommio-0.9.0.crate"; do
	if [[ -f $c ]] && echo "$sha256  $c" | sha256sum --check --status; then
		crate=$c
		break
	fi
done
if [[ -z $crate ]]; then
	crate=$root/target/glommio-0.9.0.crate
	mkdir -p "$root/target"
	echo "check-patches: downloading glommio-0.9.0.crate" >&2
	curl -sSfL --retry 3 -o "$crate.tmp" https://static.crates.io/crates/glommio/glommio-0.9.0.crate
	if ! echo "$sha256  $crate.tmp" | sha256sum --check --status; then
		echo "check-patches: glommio-0.9.0.crate does not have the crates.io checksum" >&2
		rm -f "$crate.tmp"
		exit 1
	fi
	mv "$crate.tmp" "$crate"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# git apply must not take the directory for part of some repository above it.
export GIT_CEILING_DIRECTORIES=$(dirname "$tmp")

tar xzf "$crate" -C "$tmp"
pristine=$tmp/glommio-0.9.0
(
	cd "$pristine"
	rm -rf benches .cargo_vcs_info.json Cargo.toml.orig \
		liburing/debian liburing/examples liburing/man liburing/test \
		liburing/liburing.spec liburing/make-debs.sh
	awk '/^\[\[bench\]\]$/ { skip = 1; next } skip && /^\[/ { skip = 0 } !skip' Cargo.toml >Cargo.toml.new
	mv Cargo.toml.new Cargo.toml
)

shopt -s nullglob
series=("$patches"/[0-9][0-9][0-9][0-9]-*.patch)
if ((${#series[@]} == 0)); then
	echo "check-patches: no patches in $patches" >&2
	exit 1
fi
for p in "${series[@]}"; do
	if ! (cd "$pristine" && git apply --whitespace=nowarn "$p"); then
		echo "check-patches: $(basename "$p") does not apply" >&2
		exit 1
	fi
done

ours=$tmp/vendor
mkdir "$ours"
(cd "$vendor" && tar cf - --exclude=./target --exclude=./Cargo.lock .) | tar xf - -C "$ours"
# Only a comment and the [workspace] table may follow the marker.
if awk -v m="$marker" 'index($0, m) == 1 { on = 1; next } on && !/^(#.*|\[workspace\]|)$/ { bad = 1 } END { exit !bad }' "$ours/Cargo.toml"; then
	echo "check-patches: vendor/glommio/Cargo.toml has more than [workspace] after '$marker'" >&2
	exit 1
fi
printf '%s\n' "$(awk -v m="$marker" 'index($0, m) == 1 { exit } { print }' "$ours/Cargo.toml")" >"$ours/Cargo.toml"

if ! diff -ruN "$pristine" "$ours" >"$tmp/diff"; then
	sed -e "s|$pristine|a|; s|$ours|b|" "$tmp/diff" >&2
	echo "check-patches: vendor/glommio differs from glommio 0.9.0 + vendor/glommio-patches (above: a = patched, b = vendor/glommio)" >&2
	exit 1
fi
echo "check-patches: glommio 0.9.0 + ${#series[@]} patches = vendor/glommio"
