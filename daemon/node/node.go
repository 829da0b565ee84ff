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
}

// Identity is this node's underlay.
type Identity struct {
	Underlay netip.Addr
	MTU      int
	HostNets []netip.Prefix
}

// Resolve finds the underlay address, and reads its interface's MTU and
// the host's networks. Links named in skip (skein's own) do not count as
// host networks.
func Resolve(st *cluster.State, o Options, skip ...string) (Identity, error) {
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
	for _, s := range skip {
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
