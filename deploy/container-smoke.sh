#!/usr/bin/env bash
# Proves the container run on a machine without a Docker engine or a
# registry: builds a FROM-scratch image holding the release binaries and the
# shared libraries they link, runs ws-gateway in it with podman (runc,
# cgroupfs) pinned to one CPU, with the io_uring seccomp profile and raised
# ulimits, and has a real client (Python websockets) exchange a message
# through it with ws-api running on the host.
#
#   make container-smoke        (installs podman, runc and websockets if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=localhost/ws-gateway:scratch
GW=127.0.0.1:18080 ADMIN=127.0.0.1:19090 API=127.0.0.1:18081
ctx=$(mktemp -d)
cleanup() {
    podman --runtime runc --cgroup-manager=cgroupfs rm -f ws-gateway-smoke >/dev/null 2>&1 || true
    [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null || true
    rm -rf "$ctx"
}
trap cleanup EXIT

cargo build --release -p ws-gateway -p ws-api --bins
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc"
cp target/release/ws-gateway target/release/ws-api "$ctx/rootfs/usr/local/bin/"
# The shared libraries the binaries link (libc, libgcc_s, the loader), at their paths.
libs=$(ldd target/release/ws-gateway target/release/ws-api | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
for lib in $libs; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
echo "gateway:x:10001:10001::/:/nonexistent" > "$ctx/rootfs/etc/passwd"
cat > "$ctx/Containerfile" <<'CF'
FROM scratch
COPY rootfs/ /
USER 10001
ENTRYPOINT ["/usr/local/bin/ws-gateway"]
CF
podman build --isolation=chroot -t "$IMAGE" "$ctx"

./target/release/ws-api --listen "$API" --handler echo --threads 1 --auth insecure-dev & api_pid=$!
# nproc is set low on purpose: this sandbox refuses RLIMIT_NPROC at or above
# the host's value, which podman would otherwise apply (the gateway needs a
# thread per core plus a few).
podman --runtime runc --cgroup-manager=cgroupfs run -d --name ws-gateway-smoke --network host \
    --cpuset-cpus 0 --ulimit nofile=20000:20000 --ulimit memlock=8388608:8388608 --ulimit nproc=4096:4096 \
    --security-opt seccomp=deploy/seccomp-io-uring.json \
    "$IMAGE" --listen "$GW" --admin-listen "$ADMIN" --upstream "$API" --cpus 0

for _ in $(seq 100); do
    curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://$ADMIN/readyz"
target/venv/bin/python3 tools/ws_client.py "ws://$GW/gateway/ws" 42
echo "container: $(podman --runtime runc --cgroup-manager=cgroupfs inspect -f '{{.HostConfig.CpusetCpus}} {{.Config.User}}' ws-gateway-smoke) (cpuset, user)"
podman --runtime runc --cgroup-manager=cgroupfs stop -t 15 ws-gateway-smoke >/dev/null
echo "container smoke: OK"
