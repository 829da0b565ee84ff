package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/node"
)

// Config is what the overlay needs to know of this node.
type Config struct {
	VNI  int
	Port int
	// Node says how this node finds itself and its underlay.
	Node node.Options
}

// Deps are what the controller reports to.
type Deps struct {
	Log *slog.Logger
	// Peers and Skipped, when set, count the nodes programmed and those
	// left out by reason.
	Peers   prometheus.Gauge
	Skipped *prometheus.GaugeVec
}

// Controller programs the overlay.
type Controller struct {
	cfg     Config
	deps    Deps
	kernel  Kernel
	why     string
	reason  string // why this node's own objects are refused, a metric label
	skipped string // the last skipped set logged
}

// Refused returns why this node's own pod CIDRs are refused, as a metric
// label, or "".
func (c *Controller) Refused() string { return c.reason }

// New returns the overlay controller of this node.
func New(cfg Config, deps Deps) *Controller {
	return &Controller{cfg: cfg, deps: deps, kernel: Kernel{Log: deps.Log}, why: "no snapshot of the cluster yet"}
}

// Ready says why the overlay is not programmed yet, or "" once it is.
func (c *Controller) Ready() string { return c.why }

// Sync makes the kernel match the snapshot: the device, then each peer's
// entries, from what the kernel holds now (so leftovers of an earlier run
// are reconciled, not duplicated). Until this node and its pod CIDRs are
// in the snapshot, and pass their checks, it programs nothing and says
// why in Ready: the last good state stays.
func (c *Controller) Sync(_ context.Context, st *cluster.State) error {
	local, why, reason, err := node.Find(st, c.cfg.Node)
	if err != nil {
		return err
	}
	c.reason = reason
	if why != "" {
		c.why = why
		return nil
	}
	me, _ := st.Node(c.cfg.Node.Name)
	self := Self{Name: me.Name, Underlay: local.Underlay, PodCIDRs: local.PodCIDRs, HostNets: local.HostNets}
	peers, skipped := Peers(st, self)
	c.report(peers, skipped)
	dev := Device{
		VNI: c.cfg.VNI, Port: c.cfg.Port, Local: local.Underlay,
		MTU: local.MTU - node.Overhead(local.Underlay), MAC: MACOf(me, local.Underlay),
	}
	for _, p := range local.PodCIDRs {
		dev.Addrs = append(dev.Addrs, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	link, err := c.kernel.EnsureDevice(dev)
	if err != nil {
		return err
	}
	have, err := c.kernel.Read(link)
	if err != nil {
		return err
	}
	ops := Diff(Want(peers), have)
	for _, o := range ops {
		c.deps.Log.Debug("overlay", "op", o) // printed only when debug logging is on
	}
	if len(ops) > 0 {
		c.deps.Log.Info("overlay changed", "operations", len(ops), "peers", len(peers))
	}
	if err := c.kernel.Apply(link, ops); err != nil {
		return err
	}
	c.why = ""
	return nil
}

// report counts the peers and the nodes left out, and logs the latter
// when they change.
func (c *Controller) report(peers []Peer, skipped []Skipped) {
	if c.deps.Peers != nil {
		c.deps.Peers.Set(float64(len(peers)))
	}
	if c.deps.Skipped != nil {
		c.deps.Skipped.Reset()
		for _, s := range skipped {
			c.deps.Skipped.WithLabelValues(s.Reason).Inc()
		}
	}
	var b strings.Builder
	for _, s := range skipped {
		fmt.Fprintf(&b, "%s:%s;", s.Node, s.Reason)
	}
	if b.String() != c.skipped {
		for _, s := range skipped {
			c.deps.Log.Warn("node left out of the overlay", "node", s.Node, "reason", s.Reason, "detail", s.Detail)
		}
		c.skipped = b.String()
	}
}

// Cleanup removes the device and everything on it.
func (c *Controller) Cleanup(context.Context) error { return c.kernel.DeleteDevice() }
