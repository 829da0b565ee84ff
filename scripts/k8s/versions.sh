# The versions the test control plane and the upstream tests are built
# at, the release stamp every Kubernetes binary gets, and how both
# builds run (their caches, lock and stamps); sourced by
# scripts/k8s/build.sh and build-e2e.sh. For a new version: set them
# here, then REGEN=1 scripts/k8s/build.sh and build-e2e.sh, and commit.
K8S_VERSION=v1.37.1
STAGING_VERSION=v0.${K8S_VERSION#v1.}
ETCD_VERSION=v3.7.0 # the version Kubernetes v1.37 itself pins

# build_env LABEL sets up a build in $SKEIN_K8S_HOME: $home and $bin,
# the Go caches there, static binaries, one build at a time per home
# (CI jobs on one machine share it), and say, which logs under LABEL.
build_env() {
  label=$1
  home=${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}
  bin=$home/bin
  export GOMODCACHE=$home/gomodcache GOCACHE=$home/gocache
  export GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local CGO_ENABLED=0
  mkdir -p "$bin"
  exec 9>"$home/.build.lock"
  flock -n 9 || { echo "$label: waiting for another build in $home" >&2; flock 9; }
}

say() { echo "$label [$(date -u +%T)]: $*" >&2; }

# build_stamped NAME STAMP PACKAGE COMMAND... builds PACKAGE into
# $bin/NAME with COMMAND (go build or go test -c, and its flags), unless
# the binary there was built with the same STAMP (FORCE=1 builds anyway).
# Beside the target, then renamed: a running binary is never written in
# place.
build_stamped() {
  local name=$1 stamp=$2 pkg=$3 t0=$SECONDS
  shift 3
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ] && [ "${FORCE:-0}" != 1 ]; then
    return
  fi
  say "building $name"
  nice "$@" -o "$bin/.$name.new" "$pkg"
  mv -f "$bin/.$name.new" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
  say "$name built in $((SECONDS - t0)) s"
}

# release_ldflags prints the -ldflags of upstream's release builds, run in
# a module that requires k8s.io/kubernetes: the release's commit time as
# build date, so that two builds of one version with one toolchain are
# the same bytes.
release_ldflags() {
  local date minor p flags="-s -w"
  date=$(go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  echo "$flags"
}
