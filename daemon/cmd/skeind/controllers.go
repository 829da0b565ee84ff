package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/conflist"
	"github.com/skein-net/skein/daemon/dns"
	"github.com/skein-net/skein/daemon/health"
	"github.com/skein-net/skein/daemon/hooks"
	"github.com/skein-net/skein/daemon/masq"
	"github.com/skein-net/skein/daemon/node"
	"github.com/skein-net/skein/daemon/overlay"
	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/healthcheck"
	"github.com/skein-net/skein/daemon/proxy/iptables"
	"github.com/skein-net/skein/daemon/proxy/nftables"
)

// controller is the one shape of every part of skeind: built once, then
// Sync reconciles the kernel (or a file) with a complete snapshot,
// level-triggered and idempotent, and Cleanup removes all it owns.
type controller interface {
	Sync(ctx context.Context, st *cluster.State) error
	Cleanup(ctx context.Context) error
	// Ready says why the controller has nothing programmed yet, or "".
	Ready() string
}

// named is a controller as skeind runs it.
type named struct {
	controller
	name     string
	services bool // it reads Services and EndpointSlices, not only Nodes
	// refused, when set, returns the reason (a metric label) this node's
	// own objects are refused for while the controller waits.
	refused func() string
	// before, when set, is called with the snapshot before Sync.
	before func(*cluster.State)
	// queued, when set, is called when a change wakes the controller.
	queued func()
	// programmed, when set, holds the snapshot the last successful Sync
	// programmed; a controller whose from is the same pointer syncs from
	// that snapshot (not the latest), after each such Sync.
	programmed, from *atomic.Pointer[cluster.State]
}

// newControllers builds skeind's controllers from its flags, in the
// order they run on a first snapshot: the conflist, the overlay, the
// masquerade rules, the Service proxy. run is false for skeind cleanup,
// which builds them only to call Cleanup.
func newControllers(ctx context.Context, f *flags, log *slog.Logger, m *health.Metrics, run bool) ([]named, error) {
	var nodeIP netip.Addr
	if f.nodeIP != "" {
		nodeIP = netip.MustParseAddr(f.nodeIP) // parseFlags checked it
	}
	bridge := f.bridge
	if bridge == "" {
		bridge = conf.DefaultBridge
	}
	self := node.Options{Name: f.nodeName, NodeIP: nodeIP, Iface: f.iface, Skip: []string{overlay.DeviceName, bridge}}
	owner := &hooks.Owner{} // every controller's jumps from the built-in chains
	list := conflist.New(conflist.Config{
		Path: f.conflist, Name: f.networkName, CNIVersion: f.cniVersion, Bridge: f.bridge,
		DNS: podDNS(f), ClusterDomain: f.clusterDomain, DataDir: f.cniDataDir, Node: self,
	}, log)
	ov := overlay.New(overlay.Config{VNI: f.vni, Port: f.port, Node: self},
		overlay.Deps{Log: log, Peers: m.Peers, Skipped: m.Skipped})
	mq, err := masq.New(masq.Config{Masquerade: f.masquerade, NodeIP: nodeIP}, masq.Deps{Log: log, Hooks: owner})
	if err != nil {
		return nil, fmt.Errorf("%w (skeind needs the nft command: install nftables)", err)
	}
	ctrls := []named{
		{controller: list, name: "conflist"},
		{controller: ov, name: "overlay", refused: ov.Refused},
		{controller: mq, name: "masquerade"},
	}
	d, err := addDNS(ctx, f, log, m, run)
	if err != nil {
		return nil, err
	}
	dnsAt := len(ctrls)
	if d != nil {
		ctrls = append(ctrls, named{controller: d, name: "dns", services: true})
	}
	b, err := newBackend(ctx, f, proxy.RuleOptions{Bridge: bridge, NodePortAddresses: f.nodePortAddrs, Hooks: owner}, log, run)
	if err != nil || b == nil {
		return ctrls, err
	}
	// What load balancers probe: kube-proxy counts the rules stale once a
	// change has waited twice its sync period; skeind's is --resync.
	hc := healthcheck.New(healthcheck.Options{NodePortAddresses: f.nodePortAddrs, Timeout: 2 * f.resync, Log: log})
	if run && f.proxyHealth != "" {
		go hc.Serve(ctx, f.proxyHealth, 10*time.Second)
	}
	px := proxy.New(b, proxy.Options{
		NodeName: f.nodeName, NodeIP: nodeIP, OverlayPort: uint16(f.port), CheckEvery: f.resync, Log: log,
		Metrics: proxy.NewMetrics(m.Registry), Conntrack: proxy.KernelConntrack{}, Health: hc, ServiceCIDRs: f.serviceCIDRs,
	})
	p := named{controller: px, name: "proxy", services: true, queued: hc.Queued}
	if d != nil {
		// DNS answers from what the proxy programmed: a new Service's
		// name once its rules are in, a deleted one's gone before its
		// rules are.
		p.before, p.programmed = d.Withdraw, new(atomic.Pointer[cluster.State])
		ctrls[dnsAt].from = p.programmed
	}
	return append(ctrls, p), nil
}

// addDNS makes the DNS controller when --dns is on, or for cleanup (run
// false); with DNS off it removes the device an earlier run left and
// returns nil.
func addDNS(ctx context.Context, f *flags, log *slog.Logger, m *health.Metrics, run bool) (*dns.Controller, error) {
	if f.dns.on || !run {
		return newDNS(ctx, f, log, m, run)
	}
	if dev, err := dns.NewDevice(); err == nil {
		if err := dev.Remove(ctx); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// newBackend picks the Service proxy's backend from --proxy (nftables
// first, iptables where nftables cannot be used), and when running
// removes what the other backends left. It returns nil with --proxy=none,
// and nil without error for cleanup when the backend cannot be used.
func newBackend(ctx context.Context, f *flags, o proxy.RuleOptions, log *slog.Logger, run bool) (proxy.Backend, error) {
	if f.proxy == "none" {
		if run {
			log.Info("no service proxy (--proxy=none)")
			return nil, cleanupProxy(ctx, "", log)
		}
		return nil, nil
	}
	var b proxy.Backend
	var err error
	if f.proxy == "" || f.proxy == "nftables" {
		if b, err = nftables.New(o); err != nil && f.proxy == "" {
			log.Warn("nftables cannot be used; the service proxy uses iptables", "err", err)
		}
	}
	if f.proxy == "iptables" || (f.proxy == "" && err != nil) {
		b, err = iptables.New(o)
	}
	if err != nil {
		if !run {
			return nil, nil // nothing of that backend can be installed
		}
		return nil, fmt.Errorf("service proxy: %w", err)
	}
	if run {
		// The chosen backend's own rules stay: a restart must not
		// interrupt Services. Another backend's go.
		if err := cleanupProxy(ctx, b.Name(), log); err != nil {
			return nil, err
		}
		log.Info("service proxy", "backend", b.Name())
	}
	return b, nil
}

// cleanupProxy removes the rules of every proxy backend except keep's:
// what another backend (or an earlier run with another --proxy) left.
// A backend whose tools are missing has nothing installed.
func cleanupProxy(ctx context.Context, keep string, log *slog.Logger) error {
	var errs []error
	if keep != "nftables" {
		if b, err := nftables.New(proxy.RuleOptions{}); err == nil {
			errs = append(errs, b.Cleanup(ctx))
		}
	}
	if keep != "iptables" {
		if b, err := iptables.New(proxy.RuleOptions{}); err == nil {
			errs = append(errs, b.Cleanup(ctx))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove service rules: %w", err)
	}
	if keep != "" {
		log.Debug("removed the rules of other service-proxy backends", "kept", keep)
	}
	return nil
}

// podDNS is the DNS settings the conflist gives pods: --dns-servers, or
// with skein's DNS on, its address (the kube-dns ClusterIP when given,
// which is what kubelet's clusterDNS names); ndots:5, as kubelet writes.
func podDNS(f *flags) types.DNS {
	d := types.DNS{Nameservers: splitList(f.dnsServers)}
	if len(d.Nameservers) == 0 && f.dns.on {
		d.Nameservers = []string{f.dns.addr}
		if f.dns.clusterIP != "" {
			d.Nameservers = []string{f.dns.clusterIP}
		}
		d.Options = []string{"ndots:5"}
	}
	return d
}

// newDNS builds the cluster DNS server; for run, it starts listening
// (answering SERVFAIL for the zone until the first snapshot).
func newDNS(ctx context.Context, f *flags, log *slog.Logger, m *health.Metrics, run bool) (*dns.Controller, error) {
	dev, err := dns.NewDevice()
	if err != nil {
		return nil, fmt.Errorf("%w (skeind's DNS needs the nft command: install nftables, or turn it off with --dns=false)", err)
	}
	cfg := dns.Config{
		Domain: f.clusterDomain, Upstreams: splitList(f.dns.upstreams), ResolvConf: f.dns.resolvConf,
		ForceTCP: f.dns.upstreamTCP, TTL: f.dns.ttl, Pods: f.dns.pods,
		CacheEntries: f.dns.cacheSize, CacheBytes: f.dns.cacheBytes, MinTTL: f.dns.minTTL, MaxTTL: f.dns.maxTTL,
		MaxInflight: f.dns.maxInflight,
	}
	for _, a := range []string{f.dns.addr, f.dns.clusterIP} {
		if a != "" {
			cfg.Addrs = append(cfg.Addrs, netip.MustParseAddr(a)) // parseFlags checked them
		}
	}
	c, err := dns.New(cfg, dns.Deps{Log: log, Registry: m.Registry, Device: dev})
	if err != nil {
		return nil, err
	}
	if run {
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// splitList is a comma-separated flag's values, blanks left out.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
