// Package overlay owns skein's VXLAN overlay on a node: the device
// skein.vxlan and, for every other node with a pod CIDR, a permanent
// neighbour entry (its VTEP address -> its VTEP MAC), an FDB entry (its
// VTEP MAC -> its underlay address) and a route to its pod CIDR via its
// VTEP address. Desired state is computed purely from the cluster
// snapshot (plan.go), diffed with what the kernel holds into printable
// operations, and applied in order: neighbour, FDB, then route when
// adding, the reverse when removing, so the kernel never has a route to a
// gateway it cannot resolve.
//
// A node's VTEP address is the network address of each of its pod CIDRs
// (the IPAM never hands it to a pod) and its VTEP MAC is derived from its
// underlay address, so neither changes across restarts or reinstalls.
// One device carries both inner families over the node's underlay family.
package overlay
