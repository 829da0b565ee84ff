#!/usr/bin/env bash
# skeind's cluster DNS side by side with CoreDNS, against one API server
# build (scripts/k8s.sh, without the controller manager) started afresh:
# 10,000 Services (one in ten headless) x 5 endpoints; throughput and
# latency for cluster names and cached outside names, a burst of A+AAAA
# pairs, the time from a new Service to its name, cold start and peak
# RSS. Both servers are pinned to CPU 1 (one at a time under load), the
# load generator to CPU 0. CoreDNS is built from the Go module proxy the
# first time, into $SKEIN_K8S_HOME/bin. Needs root; takes about ten
# minutes. Prints Markdown.
#   SERVICES=10000 ENDPOINTS=5 DURATION=5s WORKERS=64 BURST=1000 CHANGES=100 scripts/bench/dns.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
COREDNS_VERSION=v1.15.0
home=${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}
coredns=$home/bin/coredns
if ! [ -x "$coredns" ] || ! "$coredns" -version 2>/dev/null | grep -q "CoreDNS-${COREDNS_VERSION#v}"; then
  echo "bench: building CoreDNS ${COREDNS_VERSION} ..." >&2
  mkdir -p "$home/bin"
  CGO_ENABLED=0 GOBIN="$home/bin" go install "github.com/coredns/coredns@${COREDNS_VERSION}"
fi
export SKEIN_K8S_RUN=${SKEIN_K8S_RUN:-/tmp/skein-bench-k8s}
bin=$(mktemp -d /tmp/skbench-dns-bin-XXXXXX)
trap 'scripts/k8s.sh down >/dev/null; rm -rf "$bin"' EXIT
go build -o "$bin/dnsbench" ./integration/dnsbench # run directly: an interrupt reaches it, and it cleans up
taskset -c 0 "$bin/dnsbench" -api-up "CONTROLLER_MANAGER=0 scripts/k8s.sh up" -coredns "$coredns" -server-cpu 1 \
  -services "${SERVICES:-10000}" -endpoints "${ENDPOINTS:-5}" -duration "${DURATION:-5s}" -workers "${WORKERS:-64}" \
  -burst "${BURST:-1000}" -changes "${CHANGES:-100}"
