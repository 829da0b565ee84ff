// Package dns is skeind's cluster DNS: on every node it answers the
// cluster's names (Kubernetes DNS-Based Service Discovery, schema 1.1.0)
// from the snapshot the Service proxy last programmed, and forwards every
// other name to the node's upstream resolvers through a cache shared by
// the node's pods, in place of CoreDNS and NodeLocal DNSCache.
//
// It owns the device skein.dns (a dummy device, or a bridge without
// ports where the kernel has no dummy devices), which holds the addresses it
// serves on (the node-local address, and the kube-dns Service's ClusterIP
// when given), and the nftables table "inet skein-dns", whose rules keep
// DNS between pods and those addresses out of connection tracking: no
// conntrack entry, so no DNAT race between a pod's A and AAAA queries,
// and the Service proxy's rules for the kube-dns ClusterIP never apply
// on the node.
//
// The cluster zone (zone.go) is built per Service once, each zone from
// the last by what changed (its maps shared but for the shards a change
// touches, shards.go), and shared by every query; answers (answer.go), the forwarder (forward.go) and its
// cache (cache.go) are read by many goroutines at once and hold no lock
// on the query path but the cache's.
package dns
