#!/usr/bin/env bash
# Builds the control plane the tests and benchmarks run, from the Go
# module proxy alone: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy and kubectl, static, stamped with
# their release version.
#
# Kubernetes' own go.mod replaces its k8s.io/* staging modules with
# directories of its repository, and a dependency's replace directives
# are ignored, so `go install k8s.io/kubernetes/cmd/...@v1.x` cannot
# work. scripts/k8s/module/ is a module of its own that requires
# k8s.io/kubernetes and points each staging module at its published
# v0.<minor>.<patch> tag; its go.mod and go.sum are checked in, so every
# machine builds the same graph. REGEN=1 writes them anew from the
# release's go.mod (for a new version: set K8S_VERSION and ETCD_VERSION
# in versions.sh, run with REGEN=1, commit the result).
#
# Everything goes under $SKEIN_K8S_HOME (default /var/tmp/skein-k8s,
# kept across runs on one machine): bin/ (the binaries and a stamp each),
# gomodcache/ and gocache/ (private Go caches, about 5 GB). A binary
# whose stamp (versions, module graph, Go version, flags) still matches
# is not built again: the first run takes about 20 minutes on 2 cores
# (measured: see README), later ones seconds. Delete the directory to reclaim the space.
#   scripts/k8s/build.sh          build what the tests use, where missing or stale
#   WHAT="kubelet kube-scheduler" scripts/k8s/build.sh   build those (the module has
#                                 every binary above; the default leaves out the two
#                                 that only real nodes need)
#   FORCE=1 scripts/k8s/build.sh  build again even when the stamp matches
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=scripts/k8s/versions.sh
. "$here/versions.sh"
module=$here/module
build_env "k8s build"

tools=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubelet
  k8s.io/kubernetes/cmd/kube-proxy
  k8s.io/kubernetes/cmd/kubectl
  go.etcd.io/etcd/server/v3
)

cd "$module"
if [ "${REGEN:-0}" = 1 ] || ! [ -f go.mod ]; then
  say "writing the module for Kubernetes $K8S_VERSION, etcd $ETCD_VERSION"
  upstream=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$upstream" ] || { echo "k8s build: cannot download k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  {
    printf 'module skein.test/k8sbuild\n\ngo %s\n\n' "$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream")"
    grep '^godebug' "$upstream" || true
    printf 'require (\n\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n\ntool (\n' "$K8S_VERSION" "$ETCD_VERSION"
    printf '\t%s\n' "${tools[@]}"
    printf ')\n\nreplace (\n'
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$upstream"
    printf ')\n'
  } > go.mod
  rm -f go.sum
  go mod tidy
fi
go mod download

ldflags=$(release_ldflags)
tags=selinux,notest,grpcnotrace # the tags of upstream's release builds
graph=$(cat go.mod go.sum | sha256sum | cut -c1-16)

build() { # name package ldflags
  build_stamped "$1" "$2 k8s=$K8S_VERSION etcd=$ETCD_VERSION graph=$graph $(go env GOVERSION) tags=$tags ldflags=$(echo "$3" | sha256sum | cut -c1-16)" \
    "$2" go build -trimpath -tags "$tags" -ldflags "$3"
}
for name in ${WHAT:-etcd kube-apiserver kube-controller-manager kube-proxy kubectl}; do
  case $name in
    etcd) build etcd go.etcd.io/etcd/server/v3 "-s -w" ;;
    *) build "$name" "k8s.io/kubernetes/cmd/$name" "$ldflags" ;;
  esac
done
say "binaries in $bin"
