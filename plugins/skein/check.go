package main

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// cmdCheck verifies that the attachment is as ADD left it: the
// reservation, the host veth on the bridge, the pod interface paired with
// it, its addresses and its default routes. It names every problem found.
func cmdCheck(args *skel.CmdArgs) error {
	n, err := conf.Load(args.StdinData)
	if err != nil {
		return cniError(err)
	}
	return cniError(check(n, args))
}

func check(n *conf.Network, args *skel.CmdArgs) error {
	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	hostName := hostVethName(n.Name, key)
	store, err := ipam.OpenDisk(n.DataDir, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	pool := ipam.New(n, store)
	recs, err := pool.Lookup(key)
	if err != nil {
		return err
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if len(recs) == 0 {
		bad("no address is reserved for container %s interface %s", args.ContainerID, args.IfName)
	}
	if err := comparePrevResult(n, recs); err != nil {
		bad("%v", err)
	}

	h, err := netlinksafe.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	host, err := h.LinkByName(hostName)
	if err != nil {
		bad("host veth %s is missing", hostName)
	} else if br, err := h.LinkByName(n.Bridge); err != nil {
		bad("bridge %s is missing", n.Bridge)
	} else if host.Attrs().MasterIndex != br.Attrs().Index {
		bad("host veth %s is not attached to bridge %s", hostName, n.Bridge)
	}

	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return envErrorf("CNI_NETNS %q: %v", args.Netns, err)
	}
	defer podNS.Close()
	ph, err := netlinksafe.NewHandleAt(netns.NsHandle(podNS.Fd()))
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", args.Netns, err)
	}
	defer ph.Close()
	pod, err := ph.LinkByName(args.IfName)
	if err != nil {
		bad("interface %s is missing from %s", args.IfName, args.Netns)
		return &checkError{problems}
	}
	if host != nil && pod.Attrs().ParentIndex != host.Attrs().Index {
		bad("interface %s is not the peer of host veth %s", args.IfName, hostName)
	}
	if err := checkPodSide(n, pool, recs, ph, pod, bad); err != nil {
		return err
	}
	if len(problems) > 0 {
		return &checkError{problems}
	}
	return nil
}

// checkPodSide checks the pod interface's addresses and default routes
// against the reservations.
func checkPodSide(n *conf.Network, pool *ipam.Pool, recs []ipam.Record, ph netlinksafe.Handle, pod netlink.Link, bad func(string, ...any)) error {
	addrs, err := addrList(ph, pod)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", pod.Attrs().Name, err)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			have[p] = true
		}
	}
	gateways := map[int]netip.Addr{}
	for _, rec := range recs {
		prefix, r, err := prefixOf(pool, rec.IP)
		if err != nil {
			bad("%v", err)
			continue
		}
		gateways[conf.Family(rec.IP)] = r.Gateway
		if !have[prefix] {
			bad("interface %s lacks address %s", pod.Attrs().Name, prefix)
		}
	}
	routes, err := retry(func() ([]netlink.Route, error) {
		return ph.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: pod.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", pod.Attrs().Name, err)
	}
	for _, rt := range podRoutes(n, gateways) {
		if !hasRoute(routes, rt) {
			bad("route %s via %s is missing", rt.Dst, rt.GW)
		}
	}
	return nil
}

func hasRoute(routes []netlink.Route, want conf.Route) bool {
	for _, r := range routes {
		dst := netip.PrefixFrom(unspecified(conf.Family(want.Dst.Addr())), 0)
		if r.Dst != nil {
			p, ok := toPrefix(r.Dst)
			if !ok {
				continue
			}
			dst = p
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		if dst == want.Dst && gw.Unmap() == want.GW {
			return true
		}
	}
	return false
}

// comparePrevResult checks that the result the runtime holds names the
// addresses the store holds.
func comparePrevResult(n *conf.Network, recs []ipam.Record) error {
	if n.RawPrevResult == nil {
		return nil
	}
	raw, err := json.Marshal(n.RawPrevResult)
	if err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	generic, err := version.NewResult(n.CNIVersion, raw)
	if err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	prev, err := current.NewResultFromResult(generic)
	if err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	want := map[netip.Addr]bool{}
	for _, r := range recs {
		want[r.IP] = true
	}
	for _, ipc := range prev.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok || !want[a.Unmap()] {
			return fmt.Errorf("prevResult names %s, which is not reserved for this attachment", ipc.Address.IP)
		}
		delete(want, a.Unmap())
	}
	for a := range want {
		return fmt.Errorf("reservation %s is missing from prevResult", a)
	}
	return nil
}
