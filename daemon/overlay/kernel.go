package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Device is the desired VXLAN device.
type Device struct {
	VNI   int
	Port  int
	Local netip.Addr // this node's underlay address
	MTU   int
	MAC   net.HardwareAddr
	// Addrs are this node's VTEP addresses: the network address of each
	// pod CIDR, as /32 or /128.
	Addrs []netip.Prefix
}

// Kernel does the netlink work in the current network namespace.
type Kernel struct {
	Log *slog.Logger
}

// EnsureDevice creates the device or brings an existing one in line. One
// whose VNI, port, local address or learning setting differs cannot be
// changed in place and is recreated (its entries go with it; the caller
// reads the entries afterwards).
func (k Kernel) EnsureDevice(d Device) (netlink.Link, error) {
	l, err := netlink.LinkByName(DeviceName)
	if err == nil {
		if why := incompatible(l, d); why != "" {
			k.Log.Warn("recreating the VXLAN device", "device", DeviceName, "why", why)
			if err := netlink.LinkDel(l); err != nil {
				return nil, fmt.Errorf("delete %s: %w", DeviceName, err)
			}
			l = nil
		}
	} else if !errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("look up %s: %w", DeviceName, err)
	} else {
		l = nil
	}
	if l == nil {
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: DeviceName, MTU: d.MTU, HardwareAddr: d.MAC, TxQLen: -1},
			VxlanId:   d.VNI,
			SrcAddr:   d.Local.AsSlice(),
			Port:      d.Port,
			Learning:  false,
		}
		if err := netlink.LinkAdd(vx); err != nil {
			return nil, fmt.Errorf("create %s (VNI %d, port %d, local %s): %w", DeviceName, d.VNI, d.Port, d.Local, err)
		}
		if l, err = netlink.LinkByName(DeviceName); err != nil {
			return nil, fmt.Errorf("look up %s: %w", DeviceName, err)
		}
	}
	if l.Attrs().MTU != d.MTU {
		if err := netlink.LinkSetMTU(l, d.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", d.MTU, DeviceName, err)
		}
	}
	if l.Attrs().HardwareAddr.String() != d.MAC.String() {
		if err := netlink.LinkSetHardwareAddr(l, d.MAC); err != nil {
			return nil, fmt.Errorf("set MAC %s on %s: %w", d.MAC, DeviceName, err)
		}
	}
	if err := k.ensureAddrs(l, d.Addrs); err != nil {
		return nil, err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", DeviceName, err)
		}
	}
	return l, nil
}

func incompatible(l netlink.Link, d Device) string {
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("a %s, not a vxlan device", l.Type())
	}
	local, _ := netip.AddrFromSlice(vx.SrcAddr)
	switch {
	case vx.VxlanId != d.VNI:
		return fmt.Sprintf("VNI %d, want %d", vx.VxlanId, d.VNI)
	case vx.Port != d.Port:
		return fmt.Sprintf("port %d, want %d", vx.Port, d.Port)
	case local.Unmap() != d.Local:
		return fmt.Sprintf("local address %s, want %s", local, d.Local)
	case vx.Learning:
		return "learning is on"
	}
	return ""
}

func (k Kernel) ensureAddrs(l netlink.Link, want []netip.Prefix) error {
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", DeviceName, err)
	}
	wanted := map[netip.Prefix]bool{}
	for _, p := range want {
		wanted[p] = true
	}
	present := map[netip.Prefix]bool{}
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if wanted[p] {
			present[p] = true
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", p, DeviceName, err)
		}
	}
	for _, p := range want {
		if present[p] {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", p, DeviceName, err)
		}
	}
	return nil
}

// Read returns the entries on the device that skein manages: permanent
// neighbours, FDB entries with a destination, and routes of its protocol.
func (k Kernel) Read(l netlink.Link) (Entries, error) {
	var e Entries
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return e, fmt.Errorf("netlink socket: %w", err)
	}
	defer h.Close()
	idx := l.Attrs().Index
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := h.NeighList(idx, fam)
		if err != nil {
			return e, fmt.Errorf("list neighbours of %s: %w", DeviceName, err)
		}
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && n.State&netlink.NUD_PERMANENT != 0 && len(n.HardwareAddr) == 6 {
				e.Neighs = append(e.Neighs, Neigh{IP: ip.Unmap(), MAC: n.HardwareAddr})
			}
		}
	}
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return e, fmt.Errorf("list FDB of %s: %w", DeviceName, err)
	}
	for _, n := range fdb {
		dst, ok := netip.AddrFromSlice(n.IP)
		if ok && len(n.HardwareAddr) == 6 && !isZero(n.HardwareAddr) {
			e.FDB = append(e.FDB, FDB{MAC: n.HardwareAddr, Dst: dst.Unmap()})
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: idx, Protocol: RouteProtocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return e, fmt.Errorf("list routes of %s: %w", DeviceName, err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok1 := prefixOf(r.Dst)
		via, ok2 := netip.AddrFromSlice(r.Gw)
		if ok1 && ok2 {
			e.Routes = append(e.Routes, Route{Dst: dst, Via: via.Unmap()})
		}
	}
	return e, nil
}

// Apply runs the operations in order. It goes on past a failed one, so
// one bad peer does not keep the others unprogrammed, and returns every
// failure.
//
// The operations share one netlink socket: the package-level netlink
// calls open and close a socket per call, several system calls that a
// cold start with thousands of peers pays three times per peer.
func (k Kernel) Apply(l netlink.Link, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer h.Close()
	idx := l.Attrs().Index
	var errs []error
	for _, o := range ops {
		if err := apply(h, idx, o); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o, err))
		}
	}
	return errors.Join(errs...)
}

func apply(h *netlink.Handle, idx int, o Op) error {
	switch o.Kind {
	case NeighReplace:
		return h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: family(o.Neigh.IP), State: netlink.NUD_PERMANENT,
			IP: o.Neigh.IP.AsSlice(), HardwareAddr: o.Neigh.MAC})
	case NeighDel:
		return ignoreMissing(h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: family(o.Neigh.IP), IP: o.Neigh.IP.AsSlice()}))
	case FDBReplace:
		return h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: o.FDB.Dst.AsSlice(), HardwareAddr: o.FDB.MAC})
	case FDBDel:
		return ignoreMissing(h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: o.FDB.Dst.AsSlice(), HardwareAddr: o.FDB.MAC}))
	case RouteReplace:
		return h.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(o.Route.Dst), Gw: o.Route.Via.AsSlice(),
			Flags: int(netlink.FLAG_ONLINK), Protocol: RouteProtocol})
	case RouteDel:
		return ignoreMissing(h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipNet(o.Route.Dst), Protocol: RouteProtocol}))
	}
	return fmt.Errorf("unknown operation %d", o.Kind)
}

// DeleteDevice removes the device, and with it every entry and route on
// it. A missing device is no error.
func (k Kernel) DeleteDevice() error {
	l, err := netlink.LinkByName(DeviceName)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", DeviceName, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", DeviceName, err)
	}
	return nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}
