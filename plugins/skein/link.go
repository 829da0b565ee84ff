package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/conf"
)

// retry repeats a netlink dump the kernel interrupted (the answer spanned
// a change); netlink returns partial results with ErrDumpInterrupted.
func retry[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 5 {
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func addrList(h netlinksafe.Handle, l netlink.Link) ([]netlink.Addr, error) {
	return retry(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// ensureBridge makes the bridge exist, be up, have the network's MTU and
// hold each range's gateway, repairing what is off. An address from a
// subnet the network does not have is not touched: it means the node's pod
// CIDR changed or another network shares the bridge, and pods may still
// use it, so it is reported instead.
func ensureBridge(h netlinksafe.Handle, n *conf.Network) (*netlink.Bridge, error) {
	l, err := h.LinkByName(n.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
			Name: n.Bridge, MTU: n.MTU, TxQLen: -1, HardwareAddr: bridgeMAC(n),
		}}
		// Concurrent ADDs race to create it; the losers use the winner's.
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if l, err = h.LinkByName(n.Bridge); err != nil {
			return nil, fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
		}
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, &bridgeError{fmt.Sprintf("%s exists and is a %s, not a bridge: set \"bridge\" to another name or remove that link", n.Bridge, l.Type())}
	}
	if br.MTU != n.MTU {
		fmt.Fprintf(os.Stderr, "skein: bridge %s had MTU %d, setting %d\n", n.Bridge, br.MTU, n.MTU)
		if err := h.LinkSetMTU(br, n.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on bridge %s: %w", n.MTU, n.Bridge, err)
		}
	}
	if br.Flags&net.FlagUp == 0 {
		// Whoever brings the bridge up turns DAD off first: the kernel
		// solicits a neighbour for a forwarded IPv6 packet from the
		// bridge's link-local address and sends nothing while that
		// address is tentative, so the first second of routed IPv6 traffic
		// to pods would be lost. The segment holds only this node's pods,
		// and the bridge's MAC (hence its link-local address) is derived
		// from its own gateway.
		if _, err := sysctl.Sysctl("net/ipv6/conf/"+n.Bridge+"/accept_dad", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("turn off DAD on bridge %s: %w", n.Bridge, err)
		}
		if err := h.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("set bridge %s up: %w", n.Bridge, err)
		}
	}
	return br, ensureGateways(h, br, n)
}

func ensureGateways(h netlinksafe.Handle, br *netlink.Bridge, n *conf.Network) error {
	addrs, err := addrList(h, br)
	if err != nil {
		return fmt.Errorf("list addresses of bridge %s: %w", n.Bridge, err)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		p, ok := toPrefix(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		r, inRange := rangeHolding(n, p.Addr())
		want := netip.PrefixFrom(r.Gateway, r.Subnet.Bits())
		switch {
		case !inRange:
			return &bridgeError{fmt.Sprintf("bridge %s holds %s, which is in none of this network's subnets (%s): the node's pod CIDR changed or another network uses this bridge; delete the bridge once no pod uses it, or set \"bridge\" to another name",
				n.Bridge, p, subnets(n))}
		case p == want:
			have[p] = true
		default:
			fmt.Fprintf(os.Stderr, "skein: bridge %s had %s, replacing it with gateway %s\n", n.Bridge, p, want)
			if err := h.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("remove %s from bridge %s: %w", p, n.Bridge, err)
			}
		}
	}
	for _, r := range n.Ranges {
		want := netip.PrefixFrom(r.Gateway, r.Subnet.Bits())
		if have[want] {
			continue
		}
		addr := &netlink.Addr{IPNet: toIPNet(want)}
		if want.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // pods use it as their gateway at once
		}
		if err := h.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add gateway %s to bridge %s: %w", want, n.Bridge, err)
		}
	}
	return nil
}

func rangeHolding(n *conf.Network, a netip.Addr) (conf.Range, bool) {
	for _, r := range n.Ranges {
		if r.Subnet.Contains(a) {
			return r, true
		}
	}
	return conf.Range{}, false
}

func subnets(n *conf.Network) string {
	var s []string
	for _, r := range n.Ranges {
		s = append(s, r.Subnet.String())
	}
	return strings.Join(s, ", ")
}

// deleteHostVeth removes the attachment's host veth, and with it the pod
// side. A missing link is no error.
func deleteHostVeth(h netlinksafe.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s, not the veth skein made; not removing it", name, l.Type())
	}
	if err := h.LinkDel(l); err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// disableIPv6 keeps IPv6 off a host-side veth before it comes up: a bridge
// port needs no address, and without one the kernel sends no router
// solicitations or MLD reports into the bridge and has less to tear down
// when the pod goes. A host without IPv6 has no such setting.
func disableIPv6(link string) error {
	_, err := sysctl.Sysctl("net/ipv6/conf/"+link+"/disable_ipv6", "1")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", link, err)
	}
	return nil
}

// enableForwarding turns on forwarding for the families the network has,
// writing only when it is off.
func enableForwarding(n *conf.Network) error {
	keys := map[int]string{4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}
	for _, fam := range []int{4, 6} {
		if !n.HasFamily(fam) {
			continue
		}
		if v, err := sysctl.Sysctl(keys[fam]); err == nil && strings.TrimSpace(v) == "1" {
			continue
		}
		if _, err := sysctl.Sysctl(keys[fam], "1"); err != nil {
			return fmt.Errorf("enable %s: %w", keys[fam], err)
		}
	}
	return nil
}
