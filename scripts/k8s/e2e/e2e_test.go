// Package k8se2e pins the upstream end-to-end tests (e2e.test) and
// their test image (agnhost) at the control plane's version:
// scripts/k8s/build-e2e.sh builds both from this module.
package k8se2e

import _ "k8s.io/kubernetes/test/e2e" // go test -c builds it as e2e.test
