package cluster

import (
	"fmt"
	"net/netip"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
)

// AnnotationUnderlayIP overrides a Node's InternalIP as its underlay
// address.
const AnnotationUnderlayIP = "skein.dev/underlay-ip"

// Facts are what several controllers derive from a snapshot's Nodes,
// computed once per snapshot (see State.Seal) rather than by each of
// them at every sync.
type Facts struct {
	podCIDRs map[string]podCIDRs
	// NodeIPs are every node's addresses, sorted.
	NodeIPs []netip.Addr
	// PodNets are the nodes' pod networks, merged: every node's pod
	// CIDRs but those that hold a node's address.
	PodNets []netip.Prefix
	// Reserved are the nodes' addresses and pod networks, sorted and
	// disjoint: no Service address may be inside one.
	Reserved []netip.Prefix
}

type podCIDRs struct {
	cidrs []netip.Prefix
	err   error
}

// PodCIDRs returns a node's pod CIDRs as PodCIDRs parses them; a node
// not in the snapshot has none.
func (f *Facts) PodCIDRs(node string) ([]netip.Prefix, error) {
	p := f.podCIDRs[node]
	return p.cidrs, p.err
}

func newFacts(st *State) *Facts {
	f := &Facts{podCIDRs: make(map[string]podCIDRs, len(st.Nodes))}
	for i := range st.Nodes {
		cidrs, err := PodCIDRs(&st.Nodes[i])
		f.podCIDRs[st.Nodes[i].Name] = podCIDRs{cidrs, err}
	}
	f.addresses(st)
	return f
}

// PodCIDRs returns a node's pod CIDRs (spec.podCIDRs, else spec.podCIDR).
func PodCIDRs(n *corev1.Node) ([]netip.Prefix, error) {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	fams := map[bool]bool{}
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, fmt.Errorf("podCIDR %q is not a network in CIDR form", s)
		}
		if fams[p.Addr().Is4()] {
			return nil, fmt.Errorf("two podCIDRs of one family: %v", list)
		}
		fams[p.Addr().Is4()] = true
		out = append(out, p)
	}
	return out, nil
}

// UnderlayOf returns a node's underlay address of the given family (4 or
// 6): its annotation, else its first InternalIP of that family.
func UnderlayOf(n *corev1.Node, family int) (netip.Addr, error) {
	if s, ok := n.Annotations[AnnotationUnderlayIP]; ok {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("annotation %s %q is not an IP address", AnnotationUnderlayIP, s)
		}
		return a.Unmap(), nil
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && (family == 0 || (family == 4) == ip.Unmap().Is4()) {
			return ip.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no InternalIP of IPv%d in status.addresses", family)
}

// addresses computes the nodes' addresses (status.addresses and the
// underlay annotation), their pod networks (each node's pod CIDRs that
// hold no node's address: 0.0.0.0/0 on a Node would otherwise make every
// address a pod's), and the two merged: what no Service address may be
// inside.
func (f *Facts) addresses(st *State) {
	var nodes netipx.IPSetBuilder
	for i := range st.Nodes {
		n := &st.Nodes[i]
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				nodes.Add(ip.Unmap())
			}
		}
		if ip, err := netip.ParseAddr(n.Annotations[AnnotationUnderlayIP]); err == nil {
			nodes.Add(ip.Unmap())
		}
	}
	nodeIPs, _ := nodes.IPSet() // only additions: it cannot fail
	var pods netipx.IPSetBuilder
	for _, p := range f.podCIDRs {
		for _, c := range p.cidrs {
			if !nodeIPs.OverlapsPrefix(c) {
				pods.AddPrefix(c)
			}
		}
	}
	podSet, _ := pods.IPSet()
	var all netipx.IPSetBuilder
	all.AddSet(nodeIPs)
	all.AddSet(podSet)
	set, _ := all.IPSet()
	f.PodNets, f.Reserved = podSet.Prefixes(), set.Prefixes()
	for _, r := range nodeIPs.Ranges() {
		for a := r.From(); ; a = a.Next() {
			f.NodeIPs = append(f.NodeIPs, a)
			if a == r.To() {
				break
			}
		}
	}
}
