// Package integration holds skein's tests that need root and a real
// kernel: pods made by the real plugin binary through libcni inside
// network namespaces that play nodes. They skip without root, and fail
// instead when CI=true.
package integration
