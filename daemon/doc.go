// Package daemon holds skeind, the node daemon, one package per
// responsibility with the same lifecycle (New, then an idempotent Sync
// from the full cluster snapshot, and Cleanup):
//
//   - cluster: the snapshot and its sources (the Kubernetes API, a file)
//   - node: this node's underlay identity
//   - overlay: the VXLAN device and the per-peer entries
//   - masq: masquerade and forwarding rules
//   - hooks: skein's jumps from the built-in iptables chains, in one order
//   - proxy: the Service proxy (nftables or iptables), in place of kube-proxy
//   - cniconf: the node's conflist on disk
//   - runner: one coalescing, rate-limited, retrying sync loop
//   - health: /healthz, /readyz and /metrics
//   - cmd/skeind: the binary that wires them
package daemon
