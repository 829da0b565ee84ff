package cluster

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// UsableAddr applies the API server's rules for Service and endpoint
// addresses to every source (a cluster file is not validated by anyone
// else): no zone, and not unspecified, loopback, link-local, multicast
// or the IPv4 broadcast address. An endpoint 127.0.0.1 would DNAT to the
// node's own loopback, 169.254.169.254 to a cloud's metadata server.
func UsableAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && ip.Zone() == "" && !ip.IsUnspecified() && !ip.IsLoopback() &&
		!ip.IsLinkLocalUnicast() && !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// Headless tells whether a Service has no ClusterIP by design ("None").
func Headless(svc *corev1.Service) bool {
	ips := svc.Spec.ClusterIPs
	return svc.Spec.ClusterIP == corev1.ClusterIPNone || (len(ips) > 0 && ips[0] == corev1.ClusterIPNone)
}

// ClusterIPs parses a Service's ClusterIPs (spec.clusterIPs, else
// spec.clusterIP: an object from a file may give only that): the usable
// ones, at most one per family, in order, and why each other entry is
// left out. A headless Service has none, and no problem.
func ClusterIPs(svc *corev1.Service) (ips []netip.Addr, problems []string) {
	if Headless(svc) {
		return nil, nil
	}
	raw := svc.Spec.ClusterIPs
	if len(raw) == 0 && svc.Spec.ClusterIP != "" {
		raw = []string{svc.Spec.ClusterIP}
	}
	seen := map[bool]bool{} // by IPv4
	for _, s := range raw {
		ip, err := netip.ParseAddr(s)
		if err != nil || !UsableAddr(ip) {
			problems = append(problems, fmt.Sprintf("clusterIP %q is not a usable IP address", s))
			continue
		}
		ip = ip.Unmap()
		if seen[ip.Is4()] {
			fam := 6
			if ip.Is4() {
				fam = 4
			}
			problems = append(problems, fmt.Sprintf("two IPv%d clusterIPs", fam))
			continue
		}
		seen[ip.Is4()] = true
		ips = append(ips, ip)
	}
	return ips, problems
}
