#!/usr/bin/env bash
# Runs the upstream Kubernetes network end-to-end tests against skein on
# real nodes (integration/e2e): builds the control plane, the kubelet,
# e2e.test and agnhost where missing (scripts/k8s/build.sh,
# build-e2e.sh), starts a control plane and two real nodes in network
# namespaces, installs skein with kubectl apply -k, runs e2e.test, and
# tears it all down. Needs root.
#   scripts/e2e.sh                      the chosen network tests (FOCUS, SKIP below)
#   FOCUS='Granular Checks' scripts/e2e.sh
# e2e.test's whole output goes to $LOG (/tmp/skein-e2e.log).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "e2e: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
WHAT="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl" scripts/k8s/build.sh
scripts/k8s/build-e2e.sh
FOCUS=${FOCUS:-'\[sig-network\] Networking Granular Checks'}
SKIP=${SKIP:-'\[Feature:|\[Disruptive\]|\[Serial\]|SCTP'}
go run ./integration/e2e -focus "$FOCUS" -skip "$SKIP" -log "${LOG:-/tmp/skein-e2e.log}"
