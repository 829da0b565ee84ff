// Package cluster owns skeind's view of the cluster: the State snapshot
// every controller reconciles from, the Facts derived from its Nodes
// once per snapshot (each node's pod CIDRs, the addresses no Service may
// take) and each Service's EndpointSlices (indexed from the previous
// snapshot's index), with the walks that let a controller find what
// changed between two snapshots without a map of every Service (sealed
// snapshots list Services and EndpointSlices in key order), and the
// sources that produce it: the Kubernetes API (a
// reflector per kind) and a static file of Kubernetes-format objects,
// re-read when it changes. A source sends a snapshot only when it is
// complete, and reports its health.
package cluster
