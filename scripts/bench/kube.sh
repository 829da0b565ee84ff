#!/usr/bin/env bash
# skeind's Service proxy side by side with kube-proxy (nftables and
# iptables modes), one after the other, each against the same API server
# build (scripts/k8s.sh, without the controller manager) started afresh
# with an empty etcd, each in a node namespace of its own: bulk creation
# of 1,000 then 10,000 Services x 10 endpoints, 100 single endpoint
# changes, TCP connects to a ClusterIP at 10,000, peak RSS and CPU
# seconds. Needs root; takes about half an hour, most of it the API
# server taking 20,000 objects three times. Prints Markdown.
#   SIZES=1000,10000 REPEAT=5 CHANGES=100 DIALS=5000 PROXIES=skeind,kube-proxy-nftables,kube-proxy-iptables scripts/bench/kube.sh
# REPEAT is how many times the first bulk step is made (its Services
# deleted in between): one run of it is noisy.
# SKEIND_FLAGS adds flags to skeind's (--profiling: take profiles from
# inside its node namespace while a step runs).
# TOGETHER=1 measures only the first packet, the proxies running side by
# side on one API server loaded once to the last size, connects
# interleaved:
#   TOGETHER=1 PROXIES=skeind,kube-proxy-nftables SIZES=10000 DIALS=10000 scripts/bench/kube.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
export SKEIN_K8S_RUN=${SKEIN_K8S_RUN:-/tmp/skein-bench-k8s}
bin=$(mktemp -d /tmp/skbench-kp-bin-XXXXXX)
trap 'scripts/k8s.sh down >/dev/null; rm -rf "$bin"' EXIT
go build -o "$bin/kubebench" ./integration/kubebench  # run directly: an interrupt reaches it, and it cleans up
"$bin/kubebench" -api-up "CONTROLLER_MANAGER=0 scripts/k8s.sh up" \
  -kube-proxy "${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}/bin/kube-proxy" \
  -sizes "${SIZES:-1000,10000}" -repeat "${REPEAT:-5}" -changes "${CHANGES:-100}" -dials "${DIALS:-5000}" \
  -proxies "${PROXIES:-skeind,kube-proxy-nftables,kube-proxy-iptables}" -skeind-flags "${SKEIND_FLAGS:-}" ${TOGETHER:+-first-packet-together}
