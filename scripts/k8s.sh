#!/usr/bin/env bash
# The one-machine control plane (etcd, kube-apiserver, kube-controller-
# manager on 127.0.0.1) for the tests that need a real API server, built
# by scripts/k8s/build.sh from the versions pinned in scripts/k8s/module.
#   scripts/k8s.sh up     build what is missing, start from an empty etcd
#                         (RBAC); prints the admin kubeconfig's path
#   scripts/k8s.sh down   stop what up started
set -euo pipefail
cd "$(dirname "$0")/.."
export SKEIN_K8S_RUN=${SKEIN_K8S_RUN:-/tmp/skein-test-k8s}
case "${1:-}" in
  up)
    scripts/k8s/build.sh >&2
    scripts/k8s/stop.sh >&2 || true # a run left over from an interrupted test
    WIPE=1 AUTHZ_MODE=RBAC scripts/k8s/start.sh >&2
    echo "$SKEIN_K8S_RUN/admin.kubeconfig"
    ;;
  down)
    scripts/k8s/stop.sh >&2
    ;;
  *)
    echo "usage: scripts/k8s.sh up|down" >&2
    exit 2
    ;;
esac
