package overlay

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/node"
)

// Annotations a Node may carry.
const (
	// AnnotationVTEPMAC overrides the VTEP MAC derived from the underlay.
	AnnotationVTEPMAC = "skein.dev/vtep-mac"
)

// Reasons a node is skipped, as they appear in logs and metrics.
const (
	ReasonInvalidPodCIDR     = node.ReasonInvalidPodCIDR
	ReasonOverlappingPodCIDR = "overlapping_podcidr"
	ReasonCoversHostNetwork  = node.ReasonCoversHostNetwork
	ReasonNoUnderlay         = "no_underlay_address"
	ReasonBadUnderlay        = "bad_underlay_address"
)

// Self is this node, as the overlay needs it.
type Self struct {
	Name     string
	Underlay netip.Addr
	PodCIDRs []netip.Prefix
	// HostNets are the networks of the host's own addresses; a peer's pod
	// CIDR must not cover any of them.
	HostNets []netip.Prefix
}

// Peer is another node the overlay reaches.
type Peer struct {
	Node     string
	Underlay netip.Addr
	MAC      net.HardwareAddr
	PodCIDRs []netip.Prefix
}

// Skipped is a node left out, and why.
type Skipped struct {
	Node   string
	Reason string
	Detail string
}

// VTEPMAC derives a node's VTEP MAC from its underlay address: locally
// administered, unicast, the same on every restart and reinstall.
func VTEPMAC(underlay netip.Addr) net.HardwareAddr {
	sum := sha256.Sum256(append([]byte("skein-vtep:"), underlay.AsSlice()...))
	return net.HardwareAddr{0x0e, sum[0], sum[1], sum[2], sum[3], sum[4]}
}

// MACOf returns a node's VTEP MAC: its annotation when that is a valid
// unicast MAC, else the one derived from underlay. Every node computes
// this the same way for itself and its peers.
func MACOf(n *corev1.Node, underlay netip.Addr) net.HardwareAddr {
	if s, ok := n.Annotations[AnnotationVTEPMAC]; ok {
		if mac, err := net.ParseMAC(s); err == nil && len(mac) == 6 && mac[0]&1 == 0 && !isZero(mac) {
			return mac
		}
	}
	return VTEPMAC(underlay)
}

func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// Peers computes the peers of self from the snapshot, skipping (and
// saying why) every node that is broken or hostile: an invalid pod CIDR,
// one that overlaps ours, another node's or the host's own networks, or
// an underlay address that is missing, loopback, ours or of another
// family. Of two nodes whose pod CIDRs overlap, the older one is kept.
func Peers(st *cluster.State, self Self) ([]Peer, []Skipped) {
	nodes := make([]*corev1.Node, 0, len(st.Nodes))
	for i := range st.Nodes {
		if st.Nodes[i].Name != self.Name {
			nodes = append(nodes, &st.Nodes[i])
		}
	}
	sort.Slice(nodes, func(i, j int) bool {
		ti, tj := nodes[i].CreationTimestamp, nodes[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return nodes[i].Name < nodes[j].Name
	})
	family := 4
	if self.Underlay.Is6() {
		family = 6
	}
	var peers []Peer
	var skipped []Skipped
	claimed := &claims{}
	for _, p := range self.PodCIDRs {
		claimed.add(p, self.Name)
	}
	for _, n := range nodes {
		cidrs, err := st.Facts().PodCIDRs(n.Name)
		if err != nil {
			skipped = append(skipped, Skipped{n.Name, ReasonInvalidPodCIDR, err.Error()})
			continue
		}
		if len(cidrs) == 0 {
			continue // no pod CIDR yet: not a peer, nothing wrong
		}
		if reason, detail := checkCIDRs(cidrs, claimed, self.HostNets); reason != "" {
			skipped = append(skipped, Skipped{n.Name, reason, detail})
			continue
		}
		underlay, err := cluster.UnderlayOf(n, family)
		if err != nil {
			skipped = append(skipped, Skipped{n.Name, ReasonNoUnderlay, err.Error()})
			continue
		}
		if detail := badUnderlay(underlay, self.Underlay); detail != "" {
			skipped = append(skipped, Skipped{n.Name, ReasonBadUnderlay, detail})
			continue
		}
		for _, p := range cidrs {
			claimed.add(p, n.Name)
		}
		peers = append(peers, Peer{Node: n.Name, Underlay: underlay, MAC: MACOf(n, underlay), PodCIDRs: cidrs})
	}
	return peers, skipped
}

func checkCIDRs(cidrs []netip.Prefix, claimed *claims, hostNets []netip.Prefix) (reason, detail string) {
	for _, p := range cidrs {
		if q, owner, ok := claimed.overlapping(p); ok {
			return ReasonOverlappingPodCIDR, fmt.Sprintf("podCIDR %s overlaps %s of node %s", p, q, owner)
		}
		for _, h := range hostNets {
			if p.Overlaps(h) {
				return ReasonCoversHostNetwork, fmt.Sprintf("podCIDR %s overlaps the host's network %s", p, h)
			}
		}
	}
	return "", ""
}

// claims are the pod CIDRs accepted so far. They never overlap one
// another, so they sort into disjoint intervals, and a new prefix can
// only overlap the last claim that starts at or before the prefix's last
// address: one binary search instead of a comparison with every node.
type claims struct {
	list []claim // sorted by first address
}

type claim struct {
	p     netip.Prefix
	last  netip.Addr
	owner string
}

func (c *claims) add(p netip.Prefix, owner string) {
	i := sort.Search(len(c.list), func(i int) bool { return p.Addr().Less(c.list[i].p.Addr()) })
	c.list = append(c.list, claim{})
	copy(c.list[i+1:], c.list[i:])
	c.list[i] = claim{p: p, last: conf.LastAddr(p), owner: owner}
}

func (c *claims) overlapping(p netip.Prefix) (netip.Prefix, string, bool) {
	last := conf.LastAddr(p)
	// The first claim starting after last; the one before it is the
	// only candidate.
	i := sort.Search(len(c.list), func(i int) bool { return last.Less(c.list[i].p.Addr()) })
	if i == 0 {
		return netip.Prefix{}, "", false
	}
	q := c.list[i-1]
	if q.p.Addr().BitLen() == p.Addr().BitLen() && !q.last.Less(p.Addr()) {
		return q.p, q.owner, true
	}
	return netip.Prefix{}, "", false
}

func badUnderlay(a, ours netip.Addr) string {
	switch {
	case a.Is4() != ours.Is4():
		return fmt.Sprintf("underlay %s is not of the family of ours (%s)", a, ours)
	case a == ours:
		return fmt.Sprintf("underlay %s is this node's own", a)
	case a.IsLoopback(), a.IsUnspecified(), a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return fmt.Sprintf("underlay %s cannot be a node's address", a)
	}
	return ""
}
