package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/conflist"
	"github.com/skein-net/skein/daemon/health"
	"github.com/skein-net/skein/daemon/hooks"
	"github.com/skein-net/skein/daemon/masq"
	"github.com/skein-net/skein/daemon/node"
	"github.com/skein-net/skein/daemon/overlay"
	"github.com/skein-net/skein/daemon/proxy"
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
		DNS: dnsOf(f.dnsServers), ClusterDomain: f.clusterDomain, DataDir: f.cniDataDir, Node: self,
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
	if f.proxy == "none" {
		if run {
			log.Info("no service proxy (--proxy=none)")
			return ctrls, cleanupProxy(ctx, "", log)
		}
		return ctrls, nil
	}
	o := proxy.RuleOptions{Bridge: bridge, NodePortAddresses: f.nodePortAddrs, Hooks: owner}
	var b proxy.Backend
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
			return ctrls, nil // nothing of that backend can be installed
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
	px := proxy.New(b, proxy.Options{
		NodeName: f.nodeName, NodeIP: nodeIP, OverlayPort: uint16(f.port), FullEvery: f.resync, Log: log,
		Metrics: proxy.NewMetrics(m.Registry), Conntrack: proxy.KernelConntrack{},
	})
	return append(ctrls, named{controller: px, name: "proxy", services: true}), nil
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

func dnsOf(servers string) types.DNS {
	var d types.DNS
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			d.Nameservers = append(d.Nameservers, s)
		}
	}
	return d
}
