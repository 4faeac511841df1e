#!/usr/bin/env bash
# Checks that vendor/<crate>-patches/*.patch, applied in order to the crate
# as published on crates.io, give exactly vendor/<crate>, for each vendored
# crate: glommio 0.9.0 and tungstenite 0.30.0. Exits non-zero, showing the
# difference, if they do not.
#
# glommio's published crate is trimmed first as vendor/glommio was when it
# was vendored (benches, liburing's tests, examples, man pages and
# packaging; the [[bench]] tables of Cargo.toml); tungstenite's loses only
# cargo's own files. Left out of the comparison: the local packaging that
# is not part of a series, i.e. a vendored crate's Cargo.lock and the tail
# of its Cargo.toml from the "# ws-gateway local packaging" line (the
# [workspace] table), and any target/ directory.
#
# Each .crate comes from cargo's registry cache if present, else from
# target/, else it is downloaded from static.crates.io into target/; its
# sha256 is the crates.io index's checksum.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
marker='# ws-gateway local packaging'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# git apply must not take the directory for part of some repository above it.
export GIT_CEILING_DIRECTORIES=$tmp

# fetch NAME VERSION SHA256: the path of the verified .crate.
fetch() {
	local name=$1 version=$2 sha256=$3 c crate
	for c in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" "$root/target/$name-$version.crate"; do
		if [[ -f $c ]] && echo "$sha256  $c" | sha256sum --check --status; then
			echo "$c"
			return
		fi
	done
	crate=$root/target/$name-$version.crate
	mkdir -p "$root/target"
	echo "check-patches: downloading $name-$version.crate" >&2
	curl -sSfL --retry 3 -o "$crate.tmp" "https://static.crates.io/crates/$name/$name-$version.crate"
	if ! echo "$sha256  $crate.tmp" | sha256sum --check --status; then
		echo "check-patches: $name-$version.crate does not have the crates.io checksum" >&2
		rm -f "$crate.tmp"
		exit 1
	fi
	mv "$crate.tmp" "$crate"
	echo "$crate"
}

# trim_glommio DIR: what vendor/glommio left out of the published crate.
trim_glommio() {
	(
		cd "$1"
		rm -rf benches .cargo_vcs_info.json Cargo.toml.orig \
			liburing/debian liburing/examples liburing/man liburing/test \
			liburing/liburing.spec liburing/make-debs.sh
		awk '/^\[\[bench\]\]$/ { skip = 1; next } skip && /^\[/ { skip = 0 } !skip' Cargo.toml >Cargo.toml.new
		mv Cargo.toml.new Cargo.toml
	)
}

# trim_tungstenite DIR: cargo's own files.
trim_tungstenite() {
	rm -f "$1/.cargo_vcs_info.json" "$1/Cargo.toml.orig" "$1/Cargo.lock"
}

# check NAME VERSION SHA256
check() {
	local name=$1 version=$2 sha256=$3 crate vendor=$here/$1 patches=$here/$1-patches
	crate=$(fetch "$name" "$version" "$sha256")
	mkdir "$tmp/$name"
	tar xzf "$crate" -C "$tmp/$name"
	local pristine=$tmp/$name/$name-$version
	"trim_$name" "$pristine"

	shopt -s nullglob
	local series=("$patches"/[0-9][0-9][0-9][0-9]-*.patch) p
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

	local ours=$tmp/$name/vendor
	mkdir "$ours"
	(cd "$vendor" && tar cf - --exclude=./target --exclude=./Cargo.lock .) | tar xf - -C "$ours"
	# Only a comment and the [workspace] table may follow the marker.
	if awk -v m="$marker" 'index($0, m) == 1 { on = 1; next } on && !/^(#.*|\[workspace\]|)$/ { bad = 1 } END { exit !bad }' "$ours/Cargo.toml"; then
		echo "check-patches: vendor/$name/Cargo.toml has more than [workspace] after '$marker'" >&2
		exit 1
	fi
	printf '%s\n' "$(awk -v m="$marker" 'index($0, m) == 1 { exit } { print }' "$ours/Cargo.toml")" >"$ours/Cargo.toml"

	if ! diff -ruN "$pristine" "$ours" >"$tmp/$name/diff"; then
		sed -e "s|$pristine|a|; s|$ours|b|" "$tmp/$name/diff" >&2
		echo "check-patches: vendor/$name differs from $name $version + vendor/$name-patches (above: a = patched, b = vendor/$name)" >&2
		exit 1
	fi
	echo "check-patches: $name $version + ${#series[@]} patches = vendor/$name"
}

check glommio 0.9.0 e1f8bc1fce949d18098dc0a4e861314e40351a0144ebf61e59bdb5254a2273b2
check tungstenite 0.30.0 e48ac77174b19c110a50ab2128b24215ac9cb40e0e12e093fb602d175c569d22
