// Package harness builds skein's test clusters on one machine: network
// namespaces that play nodes and pods, a container runtime's CNI client
// (libcni, the library containerd's go-cni wraps) running the real plugin
// binaries inside a node's namespace, and the build of those binaries.
// Tests, the demo and the benchmarks share it.
package harness
