// Package node owns this node's identity as skeind sees it: its underlay
// address (from --node-ip, --iface or the Node's InternalIP, since the
// wrong interface on a multi-NIC host is a classic overlay failure), the
// MTU of the interface holding it, and the host's own networks.
package node

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/daemon/cluster"
)

// Options say where the underlay address comes from.
type Options struct {
	Name   string
	NodeIP netip.Addr // wins when set
	Iface  string     // else the first global address of this interface
	// Skip names skein's own links (the bridge, the VXLAN device), whose
	// addresses are not the host's networks.
	Skip []string
}

// Reasons this node's own pod CIDRs are refused, as metric labels (the
// same a peer's are skipped for).
const (
	ReasonInvalidPodCIDR    = "invalid_podcidr"
	ReasonCoversHostNetwork = "podcidr_covers_host_network"
)

// Overhead is what VXLAN encapsulation adds to a frame over the underlay:
// pods get the underlay's MTU less this.
func Overhead(underlay netip.Addr) int {
	if underlay.Is4() {
		return 50
	}
	return 70
}

// Local is this node as the controllers that program it see it.
type Local struct {
	Identity
	PodCIDRs []netip.Prefix
}

// Find returns this node from the snapshot: its pod CIDRs, checked as
// every peer checks them, and its underlay. why says why there is
// nothing to program yet (the node or its pod CIDRs missing or refused:
// a state to wait out, not an error); err is a failure to read the host.
func Find(st *cluster.State, o Options) (l Local, why, reason string, err error) {
	me, ok := st.Node(o.Name)
	if !ok {
		return l, fmt.Sprintf("node %q is not in the cluster yet", o.Name), "", nil
	}
	cidrs, err := st.Facts().PodCIDRs(me.Name)
	if err != nil {
		return l, fmt.Sprintf("this node's podCIDR is unusable: %v", err), ReasonInvalidPodCIDR, nil
	}
	if len(cidrs) == 0 {
		return l, "this node has no podCIDR yet (the controller manager assigns it with --allocate-node-cidrs)", "", nil
	}
	id, err := Resolve(st, o)
	if err != nil {
		return l, "", "", err
	}
	// One covering the host's networks (0.0.0.0/0) would become the
	// conflist's subnet, an accept-everything forward rule and the end
	// of masquerading.
	if reason, detail := CheckOwnPodCIDRs(cidrs, id.HostNets); reason != "" {
		return l, "this node's podCIDR is refused: " + detail, reason, nil
	}
	return Local{Identity: id, PodCIDRs: cidrs}, "", "", nil
}

// CheckOwnPodCIDRs applies to this node's own pod CIDRs the checks a
// peer's pass: none may overlap the host's networks, nor be an address
// range no pod can have (loopback, link-local, multicast, unspecified).
func CheckOwnPodCIDRs(cidrs []netip.Prefix, hostNets []netip.Prefix) (reason, detail string) {
	for _, p := range cidrs {
		if a := p.Addr(); a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			return ReasonInvalidPodCIDR, fmt.Sprintf("podCIDR %s is not a pod network", p)
		}
		for _, h := range hostNets {
			if p.Overlaps(h) {
				return ReasonCoversHostNetwork, fmt.Sprintf("podCIDR %s overlaps the host's network %s", p, h)
			}
		}
	}
	return "", ""
}

// Identity is this node's underlay.
type Identity struct {
	Underlay netip.Addr
	MTU      int
	HostNets []netip.Prefix
}

// Resolve finds the underlay address, and reads its interface's MTU and
// the host's networks. Links named in o.Skip (skein's own) do not count
// as host networks.
func Resolve(st *cluster.State, o Options) (Identity, error) {
	var id Identity
	switch {
	case o.NodeIP.IsValid():
		id.Underlay = o.NodeIP
	case o.Iface != "":
		a, err := firstAddr(o.Iface)
		if err != nil {
			return id, err
		}
		id.Underlay = a
	default:
		me, ok := st.Node(o.Name)
		if !ok {
			return id, fmt.Errorf("node %q is not in the cluster", o.Name)
		}
		a, err := cluster.UnderlayOf(me, 0)
		if err != nil {
			return id, fmt.Errorf("node %q: %w; set --node-ip or --iface", o.Name, err)
		}
		id.Underlay = a
	}
	links, err := netlink.LinkList()
	if err != nil {
		return id, fmt.Errorf("list links: %w", err)
	}
	skipped := map[string]bool{}
	for _, s := range o.Skip {
		skipped[s] = true
	}
	for _, l := range links {
		if skipped[l.Attrs().Name] {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return id, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			bits, _ := a.Mask.Size()
			if ip == id.Underlay {
				id.MTU = l.Attrs().MTU
			}
			if ip.IsGlobalUnicast() {
				id.HostNets = append(id.HostNets, netip.PrefixFrom(ip, bits).Masked())
			}
		}
	}
	if id.MTU == 0 {
		return id, fmt.Errorf("underlay address %s is on no interface of this host", id.Underlay)
	}
	return id, nil
}

func firstAddr(iface string) (netip.Addr, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--iface %s: %w", iface, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--iface %s: %w", iface, err)
	}
	for _, fam := range []bool{true, false} { // IPv4 first
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && ip.Unmap().IsGlobalUnicast() && ip.Unmap().Is4() == fam {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("--iface %s has no global address", iface)
}
