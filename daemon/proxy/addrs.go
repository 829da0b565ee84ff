package proxy

import (
	"net/netip"
	"slices"
	"sort"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/overlay"
)

// usableAddr applies the API server's rules for Service and endpoint
// addresses to every source (a cluster file is not validated by anyone
// else): no zone, and not unspecified, loopback, link-local, multicast
// or the IPv4 broadcast address. An endpoint 127.0.0.1 would DNAT to the
// node's own loopback, 169.254.169.254 to a cloud's metadata server.
func usableAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && ip.Zone() == "" && !ip.IsUnspecified() && !ip.IsLoopback() &&
		!ip.IsLinkLocalUnicast() && !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// reserved returns the reserved prefix holding ip: a binary search, as
// Reserved is sorted and disjoint (ReservedOf makes it so).
func reserved(ip netip.Addr, cfg Config) (netip.Prefix, bool) {
	r := cfg.Reserved
	i := sort.Search(len(r), func(i int) bool { return ip.Less(r[i].Addr()) })
	if i > 0 && r[i-1].Contains(ip) {
		return r[i-1], true
	}
	return netip.Prefix{}, false
}

// touches tells whether any address of the Service is in reserved.
func touches(svc *corev1.Service, r []netip.Prefix) bool {
	if len(r) == 0 {
		return false
	}
	in := func(s string) bool {
		ip, err := netip.ParseAddr(s)
		_, ok := reserved(ip.Unmap(), Config{Reserved: r})
		return err == nil && ok
	}
	if slices.ContainsFunc(svc.Spec.ClusterIPs, in) || in(svc.Spec.ClusterIP) || slices.ContainsFunc(svc.Spec.ExternalIPs, in) {
		return true
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if in(ing.IP) {
			return true
		}
	}
	return false
}

// ReservedOf returns what no Service address may be inside: every
// node's addresses (status.addresses, the underlay annotation) and
// extra (this node's own underlay, which may come from a flag), and
// every node's pod CIDRs, sorted and merged. A pod CIDR that holds a
// node's address is broken or hostile (0.0.0.0/0 on a Node would
// otherwise reserve every address); the overlay skips such a node, and
// it reserves nothing here.
func ReservedOf(st *cluster.State, extra ...netip.Addr) []netip.Prefix {
	var nodes netipx.IPSetBuilder
	for _, a := range extra {
		if a.IsValid() {
			nodes.Add(a.Unmap())
		}
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				nodes.Add(ip.Unmap())
			}
		}
		if ip, err := netip.ParseAddr(n.Annotations[overlay.AnnotationUnderlayIP]); err == nil {
			nodes.Add(ip.Unmap())
		}
	}
	nodeIPs, _ := nodes.IPSet() // only additions: it cannot fail
	var all netipx.IPSetBuilder
	all.AddSet(nodeIPs)
	for i := range st.Nodes {
		cidrs, err := overlay.PodCIDRs(&st.Nodes[i])
		if err != nil {
			continue
		}
		for _, p := range cidrs {
			if !nodeIPs.OverlapsPrefix(p) {
				all.AddPrefix(p)
			}
		}
	}
	set, _ := all.IPSet()
	return set.Prefixes()
}
