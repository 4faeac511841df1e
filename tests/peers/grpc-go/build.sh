#!/usr/bin/env bash
# Builds the grpc-go ws-api used by the integration tests:
#   tests/peers/grpc-go/build.sh OUT_BINARY
# Generates Go code from proto/*.proto into a build dir beside OUT_BINARY
# (never into the source tree) and builds main.go in GOPATH mode against
# Debian's Go packages in /usr/share/gocode. Offline; no Go module downloads.
# Exits 2, naming the Debian packages to install, when a tool is missing
# (tests/peers/grpc-go/install.sh installs them).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_BINARY" >&2
    exit 64
fi

here="$(cd "$(dirname "$0")" && pwd)"
proto_dir="$(cd "$here/../../../proto" && pwd)"
gocode=/usr/share/gocode

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# The APIv2 generator (google.golang.org/protobuf); the 1.3 one has no --version.
protoc-gen-go --version >/dev/null 2>&1 || missing+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null 2>&1 || missing+=(protoc-gen-go-grpc)
[[ -f $gocode/src/google.golang.org/grpc/version.go ]] || missing+=(golang-google-grpc-dev)
[[ -d $gocode/src/google.golang.org/protobuf/proto ]] || missing+=(golang-google-protobuf-dev)
# grpc-go 1.33 decodes through github.com/golang/protobuf: it must be the 1.4+
# shim over APIv2 (registry.go), not 1.3's table unmarshaller, which panics on
# the generated messages.
[[ -f $gocode/src/github.com/golang/protobuf/proto/registry.go ]] ||
    missing+=(golang-github-golang-protobuf-1-5-dev)
if (( ${#missing[@]} )); then
    echo "grpc-go peer: missing tools; install the Debian packages:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    echo "(or run $here/install.sh)" >&2
    exit 2
fi

grpc_version="$(sed -n 's/^const Version = "\(.*\)"$/\1/p' "$gocode/src/google.golang.org/grpc/version.go")"
echo "grpc-go peer: grpc-go ${grpc_version:-?} ($gocode), $(protoc-gen-go --version 2>&1), $(go version)" >&2

out="$1"
out_dir="$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)"
out="$out_dir/$(basename "$out")"
build="$out_dir/grpc-go-peer.build"
gopath="$build/gopath"
mkdir -p "$build"
# Concurrent builds into the same dir take turns.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$build/lock"
    flock 9
fi

# Generated code and main.go, laid out under the import paths of the protos'
# go_package options (ws-api/api/wsapi, ws-gateway/api/wsgateway).
rm -rf "$gopath"
mkdir -p "$gopath/src/wsapi-grpc-go"
protoc -I "$proto_dir" \
    --go_out="$gopath/src" \
    --go-grpc_out="$gopath/src" \
    "$proto_dir/wsgateway.proto" "$proto_dir/wsapi.proto"
cp "$here/main.go" "$gopath/src/wsapi-grpc-go/main.go"

export GO111MODULE=off
export GOPATH="$gopath:$gocode"
export GOFLAGS=
export GOPROXY=off
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOCACHE="${GOCACHE:-$build/go-cache}"
(cd "$gopath/src/wsapi-grpc-go" && go build -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
echo "grpc-go peer: built $out" >&2
