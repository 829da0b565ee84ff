# The versions the test control plane and the upstream tests are built
# at, and the release stamp every Kubernetes binary gets; sourced by
# scripts/k8s/build.sh and build-e2e.sh. For a new version: set them
# here, then REGEN=1 scripts/k8s/build.sh and build-e2e.sh, and commit.
K8S_VERSION=v1.37.1
STAGING_VERSION=v0.${K8S_VERSION#v1.}
ETCD_VERSION=v3.7.0 # the version Kubernetes v1.37 itself pins

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
