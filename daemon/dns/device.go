package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// Names of what the package owns on the node.
const (
	DeviceName = "skein.dns"
	Table      = "skein-dns"
)

// DefaultAddr is the node-local address pods ask (NodeLocal DNSCache's).
var DefaultAddr = netip.MustParseAddr("169.254.20.10")

// Device holds the served addresses on a device of skein's, and
// the table that keeps DNS to them out of conntrack.
type Device struct {
	nft knftables.Interface
}

// NewDevice needs nft.
func NewDevice() (*Device, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return &Device{nft: nft}, nil
}

// Ensure makes the device hold exactly addrs (as /32 and /128) and
// writes the table whole.
func (d *Device) Ensure(ctx context.Context, addrs []netip.Addr, port uint16) error {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("dns: find %s: %w", DeviceName, err)
		}
		if link, err = addDevice(); err != nil {
			return err
		}
	}
	switch link.(type) {
	case *netlink.Dummy, *netlink.Bridge:
	default:
		return fmt.Errorf("dns: %s exists and is a %s device, not skein's dummy or bridge", DeviceName, link.Type())
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("dns: list addresses of %s: %w", DeviceName, err)
	}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	for _, h := range have {
		a, _ := netip.AddrFromSlice(h.IP)
		if !want[a.Unmap()] {
			if err := netlink.AddrDel(link, &h); err != nil {
				return fmt.Errorf("dns: remove %s from %s: %w", a, DeviceName, err)
			}
			continue
		}
		delete(want, a.Unmap())
	}
	for _, a := range addrs {
		if !want[a] {
			continue
		}
		p := netip.PrefixFrom(a, a.BitLen())
		nl, _ := netlink.ParseAddr(p.String())
		// No prefix route: the address is local, and routed as such; no
		// duplicate detection: an IPv6 address serves at once.
		nl.Flags |= unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_NODAD
		if err := netlink.AddrAdd(link, nl); err != nil {
			return fmt.Errorf("dns: add %s to %s: %w", p, DeviceName, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("dns: set %s up: %w", DeviceName, err)
		}
	}
	err = d.nft.Run(ctx, d.transaction(addrs, port, true))
	if err != nil {
		// A kernel without nft_socket: no hold across restarts, queries
		// are refused while no server listens, as before.
		err = d.nft.Run(ctx, d.transaction(addrs, port, false))
	}
	if err != nil {
		return fmt.Errorf("dns: write table inet %s: %w", Table, err)
	}
	return nil
}

// Holds tells, from netlink alone (no nft run), whether the device is
// there, up, with every address of addrs.
func (d *Device) Holds(addrs []netip.Addr) bool {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil || link.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	held := map[netip.Addr]bool{}
	for _, h := range have {
		if a, ok := netip.AddrFromSlice(h.IP); ok {
			held[a.Unmap()] = true
		}
	}
	for _, a := range addrs {
		if !held[a] {
			return false
		}
	}
	return true
}

// addDevice makes the device a dummy, as NodeLocal DNSCache does. A
// kernel built without dummy devices gets a bridge with no ports
// instead: it too is up with no carrier to wait for, and holds local
// addresses the same way.
func addDevice() (netlink.Link, error) {
	attrs := netlink.LinkAttrs{Name: DeviceName}
	err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
	}
	if err != nil {
		return nil, fmt.Errorf("dns: add %s: %w", DeviceName, err)
	}
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		return nil, fmt.Errorf("dns: find %s: %w", DeviceName, err)
	}
	return link, nil
}

// transaction writes the table whole: DNS to and from the served
// addresses is not tracked. A tracked query to the kube-dns ClusterIP
// would be DNATed by the Service proxy (and race with its AAAA twin in
// conntrack); untracked, it is delivered here.
//
// With hold, a query that finds no server listening (skeind restarting:
// an upgrade, a crash) is dropped rather than refused: the addresses
// stay on the device, and the kernel would answer "port unreachable"
// (UDP) or a reset (TCP), on which resolvers give up at once. Dropped,
// the client asks again after its timeout (glibc and Go: 5 s; a TCP SYN
// after 1 s) and finds the new server.
func (d *Device) transaction(addrs []netip.Addr, port uint16, hold bool) *knftables.Transaction {
	tx := d.nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("skein: cluster DNS, not tracked")})
	tx.Flush(&knftables.Table{})
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{"prerouting", knftables.PreroutingHook}, {"output", knftables.OutputHook}} {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(c.hook), Priority: knftables.PtrTo(knftables.RawPriority)})
	}
	if hold {
		tx.Add(&knftables.Chain{Name: "input", Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.InputHook), Priority: knftables.PtrTo(knftables.FilterPriority + "-10")})
	}
	p := strconv.Itoa(int(port))
	for _, a := range addrs {
		ip := "ip"
		if a.Is6() {
			ip = "ip6"
		}
		for _, l4 := range []string{"udp", "tcp"} {
			// Queries coming in (from pods, on the bridge) and going out
			// (from the node itself), and the answers going back.
			tx.Add(&knftables.Rule{Chain: "prerouting", Rule: knftables.Concat(ip, "daddr", a, l4, "dport", p, "notrack")})
			tx.Add(&knftables.Rule{Chain: "output", Rule: knftables.Concat(ip, "daddr", a, l4, "dport", p, "notrack")})
			tx.Add(&knftables.Rule{Chain: "output", Rule: knftables.Concat(ip, "saddr", a, l4, "sport", p, "notrack")})
			tx.Add(&knftables.Rule{Chain: "prerouting", Rule: knftables.Concat(ip, "saddr", a, l4, "sport", p, "notrack")})
			if hold {
				// "socket transparent 0" matches when a (non-transparent)
				// socket takes the packet: the server is there.
				tx.Add(&knftables.Rule{Chain: "input", Rule: knftables.Concat(ip, "daddr", a, l4, "dport", p, "socket transparent 0 accept")})
				tx.Add(&knftables.Rule{Chain: "input", Rule: knftables.Concat(ip, "daddr", a, l4, "dport", p, "drop")})
			}
		}
	}
	return tx
}

// Remove deletes the device and the table.
func (d *Device) Remove(ctx context.Context) error {
	var errs []error
	if link, err := netlink.LinkByName(DeviceName); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("dns: delete %s: %w", DeviceName, err))
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		errs = append(errs, fmt.Errorf("dns: find %s: %w", DeviceName, err))
	}
	tx := d.nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := d.nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("dns: delete table inet %s: %w", Table, err))
	}
	return errors.Join(errs...)
}
