// Package cluster owns skeind's view of the cluster: the State snapshot
// every controller reconciles from, and the sources that produce it. The
// static file source reads Kubernetes-format objects from a YAML or JSON
// file and re-reads it when it changes; a Kubernetes informer source is to
// come. A source sends a snapshot only when it is complete.
package cluster
