#!/usr/bin/env bash
# Builds the upstream Kubernetes end-to-end tests (e2e.test) and their
# test images' programs (agnhost, and regression-issue-74839 for the
# conntrack INVALID test) at the control plane's version, from the
# Go module proxy alone, into $SKEIN_K8S_HOME/bin beside the control
# plane (scripts/k8s/build.sh), with the same caches and stamps: a
# binary whose stamp still matches is not built again.
#
# scripts/k8s/e2e/ is a module of its own (the control plane's module
# graph plus what the tests import), so that the tests' dependencies do
# not move the versions the control plane is built with. REGEN=1 writes
# its go.mod anew from scripts/k8s/module's.
#   scripts/k8s/build-e2e.sh      build e2e.test and the images' programs where missing or stale
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/k8s/versions.sh
. "$here/versions.sh"
build_env "k8s e2e build"

cd "$here/e2e"
if [ "${REGEN:-0}" = 1 ]; then
  sed -e 's#^module skein.test/k8sbuild#module skein.test/k8se2e#' "$here/module/go.mod" |
    awk '/^tool \(/{skip=1; print "tool k8s.io/kubernetes/test/images/agnhost"; next} skip&&/^\)/{skip=0; next} !skip' > go.mod
  cp "$here/module/go.sum" go.sum
  go mod tidy
fi
go mod download

ldflags=$(release_ldflags)
graph=$(cat go.mod go.sum | sha256sum | cut -c1-16)

build() { # name "go build" or "go test -c", package
  # shellcheck disable=SC2086 # $2 is two or three words
  build_stamped "$1" "$2 $3 k8s=$K8S_VERSION graph=$graph $(go env GOVERSION) ldflags=$(echo "$ldflags" | sha256sum | cut -c1-16)" \
    "$3" $2 -trimpath -ldflags "$ldflags"
}
build agnhost "go build" k8s.io/kubernetes/test/images/agnhost
build regression-issue-74839 "go build" k8s.io/kubernetes/test/images/regression-issue-74839
build e2e.test "go test -c" k8s.io/kubernetes/test/e2e
say "binaries in $bin"
