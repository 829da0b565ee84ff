#!/usr/bin/env bash
# make demo: three nodes (network namespaces on a shared underlay), each
# running the real skeind, with two pods each made by the real skein
# plugin through libcni; prints who reaches whom. Needs root.
#   scripts/demo.sh        run it (KEEP=1 leaves it up)
#   scripts/demo.sh down   remove what a KEEP=1 run left
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (it creates network namespaces)" >&2
  exit 1
fi
if [ "${1:-}" = down ]; then
  # End the skeind processes the demo started, by the PIDs it recorded.
  for pidfile in /tmp/skein-demo-cluster-*/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" && echo "stopped skeind (pid $pid)"
    fi
  done
  for ns in $(ip netns list | awk '{print $1}' | grep '^skein-demo' || true); do
    ip netns del "$ns" && echo "removed netns $ns"
  done
  rm -rf /tmp/skein-demo-* /etc/netns/skein-demo-*
  exit 0
fi
scripts/install-deps.sh
go run ./integration/demo
