// Package daemon will hold skeind, the node daemon: the cluster-state
// source, the VXLAN overlay, the Service proxy and health/metrics, one
// package per responsibility with the same lifecycle (New, Sync, Cleanup).
// It is empty for now; the CNI plugin (plugins/skein) works without it
// from a conflist written by hand.
package daemon
