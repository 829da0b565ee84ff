package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

func cmdAdd(args *skel.CmdArgs) error {
	n, err := conf.Load(args.StdinData)
	if err != nil {
		return cniError(err)
	}
	res, err := add(n, args)
	if err != nil {
		return cniError(err)
	}
	return types.PrintResult(res, n.CNIVersion)
}

// add reserves the addresses, then wires the pod. Whatever fails, it
// removes the veth and releases the reservation before returning.
func add(n *conf.Network, args *skel.CmdArgs) (*current.Result, error) {
	kv, err := cniArgs(args.Args)
	if err != nil {
		return nil, err
	}
	requested, err := requestedIPs(n, kv)
	if err != nil {
		return nil, err
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, envErrorf("CNI_NETNS %q: %v", args.Netns, err)
	}
	defer podNS.Close()

	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	hostName := hostVethName(n.Name, key)
	store, err := ipam.OpenDisk(n.DataDir, 0)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	pool := ipam.New(n, store)
	lease, err := pool.Allocate(key, hostName, requested)
	if err != nil {
		return nil, err
	}
	// The hold ends after any rollback, so GC never sees the attachment
	// half-undone and unheld.
	defer lease.Close()

	h, err := netlinksafe.NewHandle()
	if err != nil {
		return nil, rollback(fmt.Errorf("open netlink: %w", err), pool, key, nil, "")
	}
	defer h.Close()
	res, err := attach(h, n, args, podNS, hostName, pool, lease, kv)
	if err != nil {
		return nil, rollback(err, pool, key, &h, hostName)
	}
	return res, nil
}

// rollback undoes a failed ADD. Its own failures are reported in the
// message but do not change the error code, which names the first cause.
func rollback(cause error, pool *ipam.Pool, key ipam.Key, h *netlinksafe.Handle, hostName string) error {
	var errs []error
	if h != nil {
		if err := deleteHostVeth(*h, hostName); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := pool.Release(key); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (and undoing it failed: %v)", cause, errors.Join(errs...))
	}
	return cause
}

func attach(h netlinksafe.Handle, n *conf.Network, args *skel.CmdArgs, podNS ns.NetNS, hostName string, pool *ipam.Pool, lease *ipam.Lease, kv map[string]string) (*current.Result, error) {
	br, err := ensureBridge(h, n)
	if err != nil {
		return nil, err
	}
	// A veth of this name is left from an ADD that died; its pod side goes
	// with it.
	if err := deleteHostVeth(h, hostName); err != nil {
		return nil, err
	}
	ph, err := netlinksafe.NewHandleAt(netns.NsHandle(podNS.Fd()))
	if err != nil {
		return nil, fmt.Errorf("open netlink in %s: %w", args.Netns, err)
	}
	defer ph.Close()
	if _, err := ph.LinkByName(args.IfName); err == nil {
		return nil, envErrorf("CNI_IFNAME %s already exists in %s", args.IfName, args.Netns)
	}
	host, pod, err := createVeth(h, ph, n, args, podNS, br, hostName)
	if err != nil {
		return nil, err
	}
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: br.Name, Mac: br.HardwareAddr.String()},
			{Name: hostName, Mac: host.Attrs().HardwareAddr.String()},
			{Name: args.IfName, Mac: pod.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
		},
		DNS: dnsFor(n, kv),
	}
	if err := addressPod(ph, pod, n, args, pool, lease, res); err != nil {
		return nil, err
	}
	if err := enableForwarding(n); err != nil {
		return nil, err
	}
	return res, nil
}

// createVeth makes the pair, the host end on the bridge and up, the pod
// end up in the pod's namespace under its final name.
func createVeth(h, ph netlinksafe.Handle, n *conf.Network, args *skel.CmdArgs, podNS ns.NetNS, br *netlink.Bridge, hostName string) (host, pod netlink.Link, err error) {
	// One message creates both ends, the pod end already in its namespace
	// under its final name, so no temporary name can collide.
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: hostName, MTU: n.MTU, TxQLen: -1, MasterIndex: br.Index,
		},
		PeerName:      args.IfName,
		PeerNamespace: netlink.NsFd(podNS.Fd()),
	}
	if err := h.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create veth %s (pod side %s): %w", hostName, args.IfName, err)
	}
	if host, err = h.LinkByName(hostName); err != nil {
		return nil, nil, fmt.Errorf("look up %s: %w", hostName, err)
	}
	// The kernel ignores an alias given at creation. Should the ADD die
	// before this, GC still finds the veth through its reservation, which
	// names it and was written first.
	if err := h.LinkSetAlias(host, linkAlias(n.Name)); err != nil {
		return nil, nil, fmt.Errorf("set alias of %s: %w", hostName, err)
	}
	if host.Attrs().MasterIndex != br.Index {
		return nil, nil, fmt.Errorf("attach %s to bridge %s: not attached", hostName, n.Bridge)
	}
	if n.Hairpin {
		if err := h.LinkSetHairpin(host, true); err != nil {
			return nil, nil, fmt.Errorf("set hairpin on %s: %w", hostName, err)
		}
	}
	if err := disableIPv6(hostName); err != nil {
		return nil, nil, err
	}
	if err := h.LinkSetUp(host); err != nil {
		return nil, nil, fmt.Errorf("set %s up: %w", hostName, err)
	}
	if pod, err = ph.LinkByName(args.IfName); err != nil {
		return nil, nil, fmt.Errorf("look up %s in %s: %w", args.IfName, args.Netns, err)
	}
	if err := ph.LinkSetUp(pod); err != nil {
		return nil, nil, fmt.Errorf("set %s up: %w", args.IfName, err)
	}
	return host, pod, nil
}

// addressPod gives the pod end its leased addresses and its routes, and
// records both in res.
func addressPod(ph netlinksafe.Handle, pod netlink.Link, n *conf.Network, args *skel.CmdArgs, pool *ipam.Pool, lease *ipam.Lease, res *current.Result) error {
	gateways := map[int]netip.Addr{}
	for _, rec := range lease.Records {
		prefix, r, err := prefixOf(pool, rec.IP)
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: toIPNet(prefix)}
		if prefix.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := ph.AddrAdd(pod, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", prefix, args.IfName, err)
		}
		gateways[conf.Family(rec.IP)] = r.Gateway
		res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(2), Address: *toIPNet(prefix), Gateway: r.Gateway.AsSlice()})
	}
	for _, rt := range podRoutes(n, gateways) {
		route := &netlink.Route{LinkIndex: pod.Attrs().Index, Dst: toIPNet(rt.Dst), Gw: rt.GW.AsSlice()}
		if err := ph.RouteReplace(route); err != nil {
			return fmt.Errorf("add route %s via %s in %s: %w", rt.Dst, rt.GW, args.Netns, err)
		}
		res.Routes = append(res.Routes, &types.Route{Dst: *toIPNet(rt.Dst), GW: rt.GW.AsSlice()})
	}
	return nil
}

// podRoutes is the default route of each family via its gateway, then the
// configured extra routes.
func podRoutes(n *conf.Network, gateways map[int]netip.Addr) []conf.Route {
	var out []conf.Route
	for _, fam := range []int{4, 6} {
		if gw, ok := gateways[fam]; ok {
			out = append(out, conf.Route{Dst: netip.PrefixFrom(unspecified(fam), 0), GW: gw})
		}
	}
	for _, rt := range n.Routes {
		if !rt.GW.IsValid() {
			rt.GW = gateways[conf.Family(rt.Dst.Addr())]
		}
		if rt.Dst.Bits() == 0 {
			continue // the default route is already there
		}
		out = append(out, rt)
	}
	return out
}

func unspecified(fam int) netip.Addr {
	if fam == 4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// dnsFor returns the configured DNS settings; with clusterDomain set, the
// search list a Kubernetes pod expects comes first:
// <namespace>.svc.<domain> svc.<domain> <domain>.
func dnsFor(n *conf.Network, kv map[string]string) types.DNS {
	d := n.DNS
	if n.ClusterDomain == "" {
		return d
	}
	var search []string
	if podNS := kv["K8S_POD_NAMESPACE"]; podNS != "" {
		search = append(search, podNS+".svc."+n.ClusterDomain)
	}
	search = append(search, "svc."+n.ClusterDomain, n.ClusterDomain)
	seen := map[string]bool{}
	for _, s := range search {
		seen[s] = true
	}
	for _, s := range n.DNS.Search {
		if !seen[s] {
			search = append(search, s)
		}
	}
	d.Search = search
	return d
}
