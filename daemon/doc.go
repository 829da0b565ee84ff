// Package daemon holds skeind, the node daemon. Each controller is a
// package with the same shape: New(cfg, deps) once, Sync(ctx, snapshot),
// an idempotent full reconcile from the complete cluster snapshot, and
// Cleanup(ctx), which removes everything it owns; Ready says why it has
// nothing programmed yet.
//
// Controllers (none imports another):
//   - conflist: the node's CNI conflist on disk
//   - overlay: the VXLAN device and the per-peer entries
//   - masq: masquerade and forwarding rules
//   - proxy: the Service proxy (nftables or iptables), in place of kube-proxy
//   - dns: cluster DNS on every node, in place of CoreDNS; it answers from
//     the snapshot the proxy last programmed (skeind wires that)
//
// What they share:
//   - cluster: the snapshot, the facts derived from it once, its sources
//   - node: this node as the controllers see it (underlay, MTU, pod CIDRs)
//   - hooks: skein's jumps from the built-in iptables chains, in one order
//   - runner: one coalescing, rate-limited, retrying sync loop
//   - health: /healthz, /readyz and /metrics
//
// Beside them: install (the CNI plugin binaries, for the DaemonSet's init
// container) and cmd/skeind, the binary that wires a list of controllers,
// one runner each.
package daemon
