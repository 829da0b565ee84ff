// Package install puts skein's CNI plugin binaries where the container
// runtime looks for them (/opt/cni/bin), as the DaemonSet's init
// container does on every node. Each binary is written to a temporary
// file in the target directory, synced and renamed over the old one, so
// containerd never executes a half-written plugin; a binary whose content
// is already in place is left alone. The conflist is skeind's, not this
// package's.
package install
