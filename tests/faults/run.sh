#!/usr/bin/env bash
# Runs Quiver under faults and checks every read: see docs/faults.md.
#   tests/faults/run.sh --seconds 600 --nodes 5 --faults kill,pause,partition,clock,disk,shard-ops
# Needs root (namespaces, loop devices, cgroups). Set QUIVER_PROFILE=release for a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "tests/faults/run.sh needs root: it makes network namespaces, loop devices and cgroups" >&2
  exit 2
fi
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || ! command -v iptables >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime iptables iproute2 e2fsprogs >/dev/null
fi
profile="${QUIVER_PROFILE:-dev}"
cargo build --locked --profile "$profile" -p quiver-node -p quiver-tests --bin quiver-node --bin quiver-faults
dir=target/debug
[ "$profile" = dev ] || dir="target/$profile"
QUIVER_BIN_DIR="$PWD/$dir" exec "$dir/quiver-faults" "$@"
