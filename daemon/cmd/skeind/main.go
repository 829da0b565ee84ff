// Command skeind is skein's node daemon. It reads the cluster (from the
// Kubernetes API, or a static file of Node objects), writes the node's
// CNI conflist, programs the VXLAN overlay to every other node's pod CIDR,
// masquerades traffic that leaves the cluster and, in place of
// kube-proxy, installs the rules behind Services (nftables or iptables).
// Exiting leaves the dataplane in place; `skeind cleanup` removes it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cniconf"
	"github.com/skein-net/skein/daemon/health"
	"github.com/skein-net/skein/daemon/hooks"
	"github.com/skein-net/skein/daemon/masq"
	"github.com/skein-net/skein/daemon/node"
	"github.com/skein-net/skein/daemon/overlay"
	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/runner"
)

// Version is set at build time.
var Version = "dev"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(log, args)
	case "cleanup":
		err = cleanup(log, args)
	case "install-cni":
		err = installCNI(log, args)
	case "version":
		fmt.Println("skeind", Version)
	default:
		err = fmt.Errorf("unknown command %q (run, cleanup, install-cni, version)", cmd)
	}
	if err != nil {
		log.Error("skeind", "err", err)
		os.Exit(1)
	}
}

// cleanup removes everything skein owns on the node: the VXLAN device
// (with its routes and entries) and the conflist.
func cleanup(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("skeind cleanup", flag.ContinueOnError)
	conflist := fs.String("conflist", "/etc/cni/net.d/10-skein.conflist", "the conflist skeind wrote")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	owner := &hooks.Owner{}
	errs := []error{overlay.Kernel{Log: log}.DeleteDevice(), cniconf.Remove(*conflist)}
	if m, err := masq.New(log, owner); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, m.Cleanup(ctx))
	}
	errs = append(errs, cleanupProxy(ctx, "", owner, log))
	err := errors.Join(errs...)
	if err == nil {
		log.Info("removed the overlay device, the rules and the conflist", "device", overlay.DeviceName,
			"tables", []string{"inet " + masq.Table, "ip " + proxy.Table, "ip6 " + proxy.Table},
			"chains", []string{masq.ForwardChain, "SKEIN-SERVICES", "SKEIN-…"}, "conflist", *conflist)
	}
	return err
}

// cleanupProxy removes the rules of every proxy backend except keep's:
// what another backend (or an earlier run with another --proxy) left.
// A backend whose tools are missing has nothing installed.
func cleanupProxy(ctx context.Context, keep string, owner *hooks.Owner, log *slog.Logger) error {
	var errs []error
	if keep != "nftables" {
		if b, err := proxy.NewNFTables(proxy.RuleOptions{}); err == nil {
			errs = append(errs, b.Cleanup(ctx))
		}
	}
	if keep != "iptables" {
		if b, err := proxy.NewIPTables(proxy.RuleOptions{Hooks: owner}); err == nil {
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

type daemon struct {
	f       *flags
	log     *slog.Logger
	masq    *masq.Controller
	hooks   *hooks.Owner
	proxy   *proxy.Controller
	latest  atomic.Pointer[cluster.State]
	ready   *health.Readiness
	metrics *health.Metrics
	lastWhy string
	lastSkp string
}

func run(log *slog.Logger, args []string) error {
	f, unknown, err := parseFlags(args, os.Environ())
	if err != nil {
		return err
	}
	for _, key := range unknown {
		log.Warn("ignoring an environment variable that names no skeind flag", "variable", key)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	owner := &hooks.Owner{} // every controller's jumps from the built-in chains
	m, err := masq.New(log, owner)
	if err != nil {
		return fmt.Errorf("%w (skeind needs the nft command: install nftables)", err)
	}
	d := &daemon{f: f, log: log, masq: m, hooks: owner, ready: &health.Readiness{}, metrics: health.NewMetrics()}
	d.ready.Set("overlay", "no complete snapshot of the cluster yet")
	if err := d.newProxy(ctx); err != nil {
		return err
	}
	healthErr := make(chan error, 1)
	go func() { healthErr <- health.Serve(ctx, f.healthAddr, d.ready, d.metrics) }()

	r := runner.New(d.sync, runner.Options{MinInterval: f.minInterval, Resync: f.resync})
	var pr *runner.Runner
	if d.proxy != nil {
		pr = runner.New(d.syncProxy, runner.Options{MinInterval: f.minInterval, Resync: f.resync})
	}
	updates := make(chan *cluster.State)
	srcHealth := d.sourceHealth()
	var src cluster.Source = &cluster.FileSource{Path: f.clusterFile, Log: log, Health: srcHealth}
	if f.clusterFile == "" {
		client, err := cluster.NewClient(f.kubeconfig)
		if err != nil {
			return err
		}
		src = &cluster.KubeSource{Client: client, Log: log, Services: d.proxy != nil, Health: srcHealth}
	}
	go func() {
		if err := src.Run(ctx, updates); err != nil {
			log.Error("cluster source stopped", "err", err)
		}
	}()
	go func() {
		// A controller is woken only when what it reads changed (its
		// periodic resync reconciles regardless): with thousands of
		// Services, an endpoint's change must not cost an overlay sync.
		var last *cluster.State
		for {
			select {
			case <-ctx.Done():
				return
			case st := <-updates:
				d.latest.Store(st)
				nodes := last == nil || !reflect.DeepEqual(last.Nodes, st.Nodes)
				if nodes {
					r.Trigger()
				}
				if pr != nil && (nodes || !slices.Equal(last.Services, st.Services) || !slices.Equal(last.EndpointSlices, st.EndpointSlices)) {
					pr.Trigger()
				}
				last = st
			}
		}
	}()
	log.Info("skeind started", "version", Version, "node", f.nodeName, "cluster-file", f.clusterFile, "kubeconfig", f.kubeconfig)
	go r.Run(ctx)
	if pr != nil {
		go pr.Run(ctx)
	}
	select {
	case <-ctx.Done():
		log.Info("skeind stopping; the dataplane stays in place")
		return nil
	case err := <-healthErr:
		return err
	}
}

// sourceHealth is the cluster source's health, reported in
// skein_source_errors_total, skein_source_snapshot_age_seconds (0 while
// the source reads the cluster, else how long since it last did) and
// /readyz once the source has failed for --source-stale-after.
func (d *daemon) sourceHealth() *cluster.Health {
	h := &cluster.Health{OnError: func(reason string) { d.metrics.SourceErrors.WithLabelValues(reason).Inc() }}
	d.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "skein_source_snapshot_age_seconds",
		Help: "0 while the cluster source reads the cluster; while it fails, the time since it last read it.",
	}, func() float64 {
		st := h.Status()
		if st.FailingSince.IsZero() || st.LastGood.IsZero() {
			return 0
		}
		return time.Since(st.LastGood).Seconds()
	}))
	d.ready.Check("source", func() string {
		st := h.Status()
		if st.FailingSince.IsZero() {
			return ""
		}
		if failing := time.Since(st.FailingSince); failing >= d.f.staleAfter {
			return fmt.Sprintf("the cluster source has failed for %s (last error: %s); the dataplane keeps the last good snapshot",
				failing.Round(time.Second), st.LastError)
		}
		return ""
	})
	return h
}

// sync is one full reconcile from the latest snapshot. It does nothing
// before the first complete snapshot.
func (d *daemon) sync(ctx context.Context) error {
	st := d.latest.Load()
	if st == nil {
		return nil
	}
	start := time.Now()
	defer func() { d.metrics.SyncDuration.WithLabelValues("overlay").Observe(time.Since(start).Seconds()) }()
	me, ok := st.Node(d.f.nodeName)
	if !ok {
		d.waiting(fmt.Sprintf("node %q is not in the cluster yet", d.f.nodeName))
		return nil
	}
	cidrs, err := st.Facts().PodCIDRs(me.Name)
	if err != nil {
		d.waiting(fmt.Sprintf("this node's podCIDR is unusable: %v", err))
		return nil
	}
	if len(cidrs) == 0 {
		d.waiting("this node has no podCIDR yet (the controller manager assigns it with --allocate-node-cidrs)")
		return nil
	}
	var nodeIP netip.Addr
	if d.f.nodeIP != "" {
		nodeIP = netip.MustParseAddr(d.f.nodeIP)
	}
	bridge := d.f.bridge
	if bridge == "" {
		bridge = conf.DefaultBridge
	}
	id, err := node.Resolve(st, node.Options{Name: d.f.nodeName, NodeIP: nodeIP, Iface: d.f.iface}, overlay.DeviceName, bridge)
	if err != nil {
		d.fail("underlay", err)
		return err
	}
	// The node's own pod CIDRs pass the checks every peer's do: one
	// covering the host's networks (0.0.0.0/0) would become the
	// conflist's subnet, an accept-everything forward rule and the end
	// of masquerading. The last good state stays until it is mended.
	if reason, detail := overlay.CheckOwnPodCIDRs(cidrs, id.HostNets); reason != "" {
		d.metrics.SyncErrors.WithLabelValues("overlay", reason).Inc()
		d.waiting(fmt.Sprintf("this node's podCIDR is refused: %s", detail))
		return nil
	}
	mtu := id.MTU - overlay.Overhead(id.Underlay)
	list, err := conf.RenderConflist(conf.ConflistOptions{
		Name: d.f.networkName, CNIVersion: d.f.cniVersion, Bridge: d.f.bridge, PodCIDRs: cidrs, MTU: mtu,
		DNS: dnsOf(d.f.dnsServers), ClusterDomain: d.f.clusterDomain, DataDir: d.f.cniDataDir, PortMap: true,
	})
	if err != nil {
		d.fail("conflist", err)
		return err
	}
	if changed, err := cniconf.Write(d.f.conflist, list); err != nil {
		d.fail("conflist", err)
		return err
	} else if changed {
		d.log.Info("wrote the conflist", "path", d.f.conflist, "podCIDRs", cidrs, "mtu", mtu)
	}
	ctrl := overlay.New(overlay.Config{
		NodeName: d.f.nodeName, VNI: d.f.vni, Port: d.f.port,
		Underlay: id.Underlay, UnderlayMTU: id.MTU, HostNets: id.HostNets,
	}, d.log)
	res, err := ctrl.Sync(ctx, st)
	d.report(res)
	if err != nil {
		d.fail("overlay", err)
		return err
	}
	d.ready.Set("overlay", "")
	d.lastWhy = ""
	// Masquerade and forwarding: every node the overlay reaches, and this
	// one; a node left out of the overlay is left out here too.
	w := masq.Want{Masquerade: d.f.masquerade, PodNets: cidrs, NodeIPs: []netip.Addr{id.Underlay}}
	for _, p := range res.Peers {
		w.PodNets = append(w.PodNets, p.PodCIDRs...)
		w.NodeIPs = append(w.NodeIPs, p.Underlay)
	}
	if err := d.masq.Sync(ctx, w); err != nil {
		d.fail("masquerade", err)
		return err
	}
	return nil
}

// newProxy picks the Service proxy's backend and removes what any other
// backend installed.
func (d *daemon) newProxy(ctx context.Context) error {
	backend := d.f.proxy
	if backend == "none" {
		d.log.Info("no service proxy (--proxy=none)")
		return cleanupProxy(ctx, "", d.hooks, d.log)
	}
	bridge := d.f.bridge
	if bridge == "" {
		bridge = conf.DefaultBridge
	}
	o := proxy.RuleOptions{Bridge: bridge, NodePortAddresses: d.f.nodePortAddrs, Hooks: d.hooks}
	var b proxy.Backend
	var err error
	if backend == "" || backend == "nftables" {
		if b, err = proxy.NewNFTables(o); err != nil && backend == "" {
			d.log.Warn("nftables cannot be used; the service proxy uses iptables", "err", err)
		}
	}
	if backend == "iptables" || (backend == "" && err != nil) {
		b, err = proxy.NewIPTables(o)
	}
	if err != nil {
		return fmt.Errorf("service proxy: %w", err)
	}
	// The chosen backend's own rules stay: a restart must not interrupt
	// Services. Another backend's go.
	if err := cleanupProxy(ctx, b.Name(), d.hooks, d.log); err != nil {
		return err
	}
	d.log.Info("service proxy", "backend", b.Name())
	d.ready.Set("proxy", "the service rules are not written yet")
	var nodeIP netip.Addr
	if d.f.nodeIP != "" {
		nodeIP = netip.MustParseAddr(d.f.nodeIP) // parseFlags checked it
	}
	d.proxy = proxy.New(b, proxy.Options{
		NodeName: d.f.nodeName, NodeIP: nodeIP, OverlayPort: uint16(d.f.port), FullEvery: d.f.resync, Log: d.log,
		Metrics: proxy.NewMetrics(d.metrics.Registry), Conntrack: proxy.KernelConntrack{},
	})
	return nil
}

// syncProxy is the Service proxy's reconcile from the latest snapshot.
func (d *daemon) syncProxy(ctx context.Context) error {
	st := d.latest.Load()
	if st == nil {
		return nil
	}
	if err := d.proxy.Sync(ctx, st); err != nil {
		d.metrics.SyncErrors.WithLabelValues("proxy", "rules").Inc()
		d.ready.Set("proxy", "the last sync of the service rules failed: "+err.Error())
		d.log.Error("service proxy sync failed; the previous rules stay, will retry", "err", err)
		return err
	}
	d.ready.Set("proxy", d.proxy.Ready())
	return nil
}

func (d *daemon) waiting(why string) {
	d.ready.Set("overlay", why)
	if why != d.lastWhy {
		d.log.Warn("waiting", "why", why)
		d.lastWhy = why
	}
}

func (d *daemon) fail(reason string, err error) {
	d.metrics.SyncErrors.WithLabelValues("overlay", reason).Inc()
	d.log.Error("sync failed; will retry", "stage", reason, "err", err)
}

func (d *daemon) report(res overlay.Result) {
	d.metrics.Peers.Set(float64(len(res.Peers)))
	d.metrics.Skipped.Reset()
	var b strings.Builder
	for _, s := range res.Skipped {
		d.metrics.Skipped.WithLabelValues(s.Reason).Inc()
		fmt.Fprintf(&b, "%s:%s;", s.Node, s.Reason)
	}
	if b.String() != d.lastSkp {
		for _, s := range res.Skipped {
			d.log.Warn("node left out of the overlay", "node", s.Node, "reason", s.Reason, "detail", s.Detail)
		}
		d.lastSkp = b.String()
	}
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
