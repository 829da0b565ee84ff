package proxy

import (
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

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

// withAddr returns the sorted, disjoint prefixes r with a too (a flag's
// address, which no Node object need list), in its place.
func withAddr(r []netip.Prefix, a netip.Addr) []netip.Prefix {
	if !a.IsValid() {
		return r
	}
	a = a.Unmap()
	if _, ok := reserved(a, Config{Reserved: r}); ok {
		return r
	}
	i := sort.Search(len(r), func(i int) bool { return a.Less(r[i].Addr()) })
	return slices.Insert(slices.Clone(r), i, netip.PrefixFrom(a, a.BitLen()))
}
