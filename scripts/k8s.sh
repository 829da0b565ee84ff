#!/usr/bin/env bash
# The one-machine control plane (etcd, kube-apiserver, kube-controller-
# manager on 127.0.0.1) from ../shared/tools/k8s, for the tests that need
# a real API server. Building takes ~7 minutes the first time on 2 cores
# and seconds afterwards.
#   scripts/k8s.sh up     build if needed, start (authorization: RBAC); prints
#                         the admin kubeconfig path
#   scripts/k8s.sh down   stop what up started
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${SKEIN_K8S_TOOLS:-../shared/tools/k8s}
export SKEIN_K8S_RUN=${SKEIN_K8S_RUN:-/tmp/skein-test-k8s}
case "${1:-}" in
  up)
    [ -x "$tools/build.sh" ] || { echo "k8s: no $tools/build.sh" >&2; exit 1; }
    "$tools/build.sh" >&2
    "$tools/stop.sh" >&2 || true  # a run left over from an interrupted test
    # RBAC, as a real cluster has: the tests check what skein's
    # ServiceAccount may and may not do.
    WIPE=1 AUTHZ_MODE=RBAC "$tools/start.sh" >&2
    echo "$SKEIN_K8S_RUN/admin.kubeconfig"
    ;;
  down)
    "$tools/stop.sh" >&2
    ;;
  *)
    echo "usage: scripts/k8s.sh up|down" >&2
    exit 2
    ;;
esac
