#!/usr/bin/env bash
# Installs the Debian packages that tests/peers/grpc-go/build.sh needs, only
# if something is missing.
set -euo pipefail

# golang-google-grpc-dev depends on "golang-github-golang-protobuf-1-3-dev |
# …-1-5-dev" and apt takes the first: the 1.3 table unmarshaller, which panics
# on protoc-gen-go's APIv2 messages ("protobuf tag not enough fields in
# ConnectRequest.state"). Naming 1.5 (the shim over APIv2) picks it instead.
packages=(golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc
          golang-github-golang-protobuf-1-5-dev
          golang-google-grpc-dev golang-google-protobuf-dev)
gocode=/usr/share/gocode

if command -v go >/dev/null 2>&1 &&
    command -v protoc >/dev/null 2>&1 &&
    protoc-gen-go --version >/dev/null 2>&1 &&
    command -v protoc-gen-go-grpc >/dev/null 2>&1 &&
    [[ -f $gocode/src/google.golang.org/grpc/version.go ]] &&
    [[ -d $gocode/src/google.golang.org/protobuf/proto ]] &&
    [[ -f $gocode/src/github.com/golang/protobuf/proto/registry.go ]]; then
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi
echo "grpc-go peer: installing ${packages[*]}" >&2
"${sudo[@]}" apt-get update -qq
# protoc-gen-go conflicts with protoc-gen-go-1-3 and golang-goprotobuf-dev,
# golang-github-golang-protobuf-1-5-dev with …-1-3-dev: apt would remove
# those from the host to make room. --no-remove refuses instead, and says
# which; removing them is the machine owner's call.
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-remove "${packages[@]}" >&2; then
    echo "grpc-go peer: apt would have to remove packages that conflict with ${packages[*]}" >&2
    echo "  (see the lines above); remove them yourself, or skip the grpc-go peer's tests" >&2
    exit 1
fi
