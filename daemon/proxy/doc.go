// Package proxy is skeind's Service proxy, in place of kube-proxy: it
// turns Services and EndpointSlices into the rules that DNAT a
// ClusterIP, a NodePort or an external address to the Service's
// endpoints, masquerade where replies would otherwise miss the node,
// and refuse new connections to a Service without endpoints.
//
// One model (Build: pure, from a snapshot, problems reported rather than
// fatal) feeds two backends: nftables (tables "ip skein" and "ip6
// skein", verdict maps, one transaction per family per sync) and
// iptables (chains SKEIN-…, iptables-restore --noflush, one
// transaction per family per sync, a prefix tree for dispatch). Between
// full syncs a backend rewrites only the chains and map elements that
// changed, worked out from the Service ports that changed, not from the
// whole table. The nftables backend renders nft's text (what the golden
// files hold) and writes the same operations to the kernel over netlink
// (nftwire.go, nftrule.go), one kernel transaction per sync; a change of
// endpoints-map elements alone skips the text. The controller also clears the UDP conntrack entries that
// would keep clients sending into a black hole.
package proxy
