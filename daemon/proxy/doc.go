// Package proxy is skeind's Service proxy, in place of kube-proxy: it
// turns Services and EndpointSlices into the rules that DNAT a
// ClusterIP, a NodePort or an external address to the Service's
// endpoints, masquerade where replies would otherwise miss the node,
// and refuse new connections to a Service without endpoints.
//
// This package holds the model and the controller. The model (Build:
// pure, from a snapshot, problems reported rather than fatal; a Memo
// recomputes only the Services that changed) feeds one of two backends,
// each a package of its own:
//   - nftables: tables "ip skein" and "ip6 skein", verdict maps, one
//     kernel transaction per family per sync, written over netlink;
//   - iptables: chains SKEIN-…, iptables-restore --noflush, one
//     transaction per family per sync, a prefix tree for dispatch.
//
// Between full syncs a backend rewrites only the chains and map elements
// that changed, worked out from the Service ports that changed (a
// PortSet walks the last model's beside the next's), not from the whole
// table. The controller isolates a
// Service whose rules the kernel refuses, and clears the UDP conntrack
// entries that would keep clients sending into a black hole.
//
// What load balancers ask of a kube-proxy (health checks, the node's
// eligibility) and topology hints and Service ranges are in
// balancing.go; package healthcheck serves the health checks.
package proxy
