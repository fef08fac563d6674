#!/usr/bin/env bash
# Builds the images without any registry and starts the 3-node cluster with its S3 server.
#   quiver-node:local  FROM scratch, a statically linked quiver-node
#   quiver-s3:local    a root file system holding s3s-fs and the libraries it links, made
#                      into an image with `docker import`
#   deploy/secrets/    a CA (ca.pem, ca.key: never mounted), and per node nodeN/ with its own
#                      member certificate, key and ca.pem, the only files its container
#                      sees (quiverctl cert), made once; after the start, admin.token: the
#                      cluster admin's token
# Usage: deploy/up.sh [--build-only]    (QUIVER_COMPOSE_PROJECT picks the compose project name)
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

echo "== static quiver-node and quiverctl"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" \
    -p quiver-node -p quiver-admin --bins
for bin in quiver-node quiverctl; do
    cp "target/$target/release/$bin" "$context/$bin"
    strip "$context/$bin" 2>/dev/null || true
done
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
cp deploy/Dockerfile "$context/Dockerfile"
docker build -q -t quiver-node:local "$context"

echo "== S3-compatible server image"
if ! command -v s3s-fs >/dev/null 2>&1; then
    cargo install s3s-fs --version 0.14.1 --locked --features binary
fi
rootfs="$context/s3-rootfs"
mkdir -p "$rootfs/data/quiver" "$rootfs/tmp"
cp "$(command -v s3s-fs)" "$rootfs/s3s-fs"
# The binary and every shared library it loads, at the paths the loader expects.
for lib in $(ldd "$(command -v s3s-fs)" | grep -oE '/[^ ]+'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
tar -C "$rootfs" -c . | docker import - quiver-s3:local >/dev/null

echo "== certificates (deploy/secrets)"
secrets=deploy/secrets
quiverctl="target/$target/release/quiverctl"
if [ ! -f "$secrets/ca.pem" ]; then
    "$quiverctl" cert create-ca --out "$secrets"
fi
for n in 1 2 3; do
    # Peers reach node$n by its service name, clients on the host at 127.0.0.1.
    own="$secrets/node$n"
    [ -f "$own/node$n.pem" ] || "$quiverctl" cert create-node "node$n" --ca-dir "$secrets" --out "$own"
    cp "$secrets/ca.pem" "$own/ca.pem"
done

if [ "${1:-}" = "--build-only" ]; then
    exit 0
fi
echo "== cluster"
# Compose v2 (a docker plugin) or v1 (docker-compose), whichever is installed.
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
project=(-f deploy/docker-compose.yml -p "${QUIVER_COMPOSE_PROJECT:-quiver}")
"${compose[@]}" "${project[@]}" up -d
# The first member writes the cluster admin's token into its data dir on its first start.
node1=$("${compose[@]}" "${project[@]}" ps -q node1)
for _ in $(seq 60); do
    docker cp "$node1:/data/admin.token" "$secrets/admin.token" 2>/dev/null && break
    sleep 1
done
chmod 600 "$secrets/admin.token"
echo "nodes: https://127.0.0.1:7071, :7072, :7073 (gRPC, TLS); health on :7081, :7082, :7083 (loopback only)"
echo "use:   export QUIVER_ENDPOINT=https://127.0.0.1:7071 QUIVER_CA=$secrets/ca.pem QUIVER_TOKEN=\$(cat $secrets/admin.token)"
