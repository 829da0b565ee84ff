#!/usr/bin/env bash
# Runs skein's tests: unit tests (no root needed), then the integration
# tests under integration/, which need root and a real kernel. Without
# root those skip; with CI=true they fail instead.
#   scripts/test.sh              every test
#   scripts/test.sh unit         unit tests only
#   scripts/test.sh integration  integration tests only
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
  modprobe -q br_netfilter 2>/dev/null || true
fi

pkgs_unit=$(go list ./... | grep -v '/integration')
status=0
if [ "$what" = all ] || [ "$what" = unit ]; then
  echo "== unit tests"
  go test -race -count=1 $pkgs_unit || status=1
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
  if [ "$(id -u)" -eq 0 ] && [ -z "${SKEIN_TEST_KUBECONFIG:-}" ]; then
    echo "== starting a kube-apiserver for the tests that need one"
    # The kubelet and the scheduler too: TestRealNodes runs real nodes.
    if kc=$(WHAT="etcd kube-apiserver kube-controller-manager kube-proxy kubectl kubelet kube-scheduler" scripts/k8s.sh up); then
      export SKEIN_TEST_KUBECONFIG=$kc
      export SKEIN_TEST_K8S_RUN=$(dirname "$kc")
      export SKEIN_TEST_KUBECTL=${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}/bin/kubectl
      trap 'scripts/k8s.sh down' EXIT
    else
      echo "no kube-apiserver: the tests that need one fail under CI=true and skip otherwise" >&2
    fi
  fi
  echo "== integration tests (root, network namespaces)"
  go test -race -count=1 -timeout 20m ./integration/... || status=1
fi
exit $status
