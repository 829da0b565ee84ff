#!/usr/bin/env bash
# skeind's Service proxy side by side with kube-proxy (nftables and
# iptables modes), one after the other against one real API server (built
# and started by scripts/k8s.sh, without the controller manager), each in
# a node namespace of its own: bulk creation of 1,000 then 10,000
# Services x 10 endpoints, 100 single endpoint changes, TCP connects to a
# ClusterIP at 10,000, peak RSS and CPU seconds. Needs root; takes ~20
# minutes (kube-proxy's iptables mode at 10,000 is most of it). Prints
# Markdown.
#   SIZES=1000,10000 CHANGES=100 PROXIES=skeind,kube-proxy-nftables,kube-proxy-iptables scripts/bench/kube.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
export SKEIN_K8S_RUN=${SKEIN_K8S_RUN:-/tmp/skein-bench-k8s}
kc=$(CONTROLLER_MANAGER=0 scripts/k8s.sh up)
trap 'scripts/k8s.sh down >/dev/null' EXIT
go run ./integration/kubebench -kubeconfig "$kc" \
  -kube-proxy "${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}/bin/kube-proxy" \
  -sizes "${SIZES:-1000,10000}" -changes "${CHANGES:-100}" \
  -proxies "${PROXIES:-skeind,kube-proxy-nftables,kube-proxy-iptables}"
