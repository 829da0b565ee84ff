package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// KernelConntrack deletes entries through the kernel's conntrack netlink
// API in the current network namespace.
type KernelConntrack struct{}

// Delete implements Conntrack.
func (KernelConntrack) Delete(fam int, dst netip.Addr, port uint16, backend netip.Addr) error {
	f := &netlink.ConntrackFilter{}
	if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return err
	}
	nlFam := netlink.FAMILY_V4
	if fam == 6 {
		nlFam = netlink.FAMILY_V6
	}
	if dst.IsValid() {
		if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(dst.AsSlice())); err != nil {
			return err
		}
	}
	if port != 0 {
		if err := f.AddPort(netlink.ConntrackOrigDstPort, port); err != nil {
			return err
		}
	}
	if backend.IsValid() {
		if err := f.AddIP(netlink.ConntrackReplySrcIP, net.IP(backend.AsSlice())); err != nil {
			return err
		}
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(nlFam), f); err != nil {
		return fmt.Errorf("delete conntrack entries to %s port %d (backend %s): %w", dst, port, backend, err)
	}
	return nil
}
