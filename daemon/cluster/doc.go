// Package cluster owns skeind's view of the cluster: the State snapshot
// every controller reconciles from, the Facts derived from its Nodes
// once per snapshot (each node's pod CIDRs, the addresses no Service may
// take), and the sources that produce it: the Kubernetes API (a
// reflector per kind) and a static file of Kubernetes-format objects,
// re-read when it changes. A source sends a snapshot only when it is
// complete, and reports its health.
package cluster
