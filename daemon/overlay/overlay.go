package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/skein-net/skein/daemon/cluster"
)

// Config is what the overlay needs to know of this node.
type Config struct {
	NodeName string
	VNI      int
	Port     int
	Underlay netip.Addr
	// UnderlayMTU is the MTU of the interface holding Underlay; the
	// device gets it less the encapsulation (50 bytes over IPv4, 70 over
	// IPv6).
	UnderlayMTU int
	HostNets    []netip.Prefix
}

// Overhead is what VXLAN encapsulation adds to a frame over the underlay.
func Overhead(underlay netip.Addr) int {
	if underlay.Is4() {
		return 50
	}
	return 70
}

// Result is what a sync did.
type Result struct {
	Peers   []Peer
	Skipped []Skipped
	Ops     []Op
}

// ErrNoPodCIDR means this node has no pod CIDR yet; nothing is programmed.
var ErrNoPodCIDR = errors.New("this node has no pod CIDR yet")

// Controller programs the overlay.
type Controller struct {
	cfg    Config
	kernel Kernel
	log    *slog.Logger
}

// New returns the overlay controller of this node.
func New(cfg Config, log *slog.Logger) *Controller {
	return &Controller{cfg: cfg, kernel: Kernel{Log: log}, log: log}
}

// Sync makes the kernel match the snapshot: the device, then each peer's
// entries, from what the kernel holds now (so leftovers of an earlier run
// are reconciled, not duplicated).
func (c *Controller) Sync(_ context.Context, st *cluster.State) (Result, error) {
	me, ok := st.Node(c.cfg.NodeName)
	if !ok {
		return Result{}, fmt.Errorf("node %q is not in the cluster", c.cfg.NodeName)
	}
	cidrs, err := st.Facts().PodCIDRs(me.Name)
	if err != nil {
		return Result{}, fmt.Errorf("this node: %w", err)
	}
	if len(cidrs) == 0 {
		return Result{}, ErrNoPodCIDR
	}
	self := Self{Name: c.cfg.NodeName, Underlay: c.cfg.Underlay, PodCIDRs: cidrs, HostNets: c.cfg.HostNets}
	peers, skipped := Peers(st, self)
	dev := Device{
		VNI: c.cfg.VNI, Port: c.cfg.Port, Local: c.cfg.Underlay,
		MTU: c.cfg.UnderlayMTU - Overhead(c.cfg.Underlay), MAC: MACOf(me, c.cfg.Underlay),
	}
	for _, p := range cidrs {
		dev.Addrs = append(dev.Addrs, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	link, err := c.kernel.EnsureDevice(dev)
	if err != nil {
		return Result{Peers: peers, Skipped: skipped}, err
	}
	have, err := c.kernel.Read(link)
	if err != nil {
		return Result{Peers: peers, Skipped: skipped}, err
	}
	ops := Diff(Want(peers), have)
	for _, o := range ops {
		c.log.Debug("overlay", "op", o) // printed only when debug logging is on
	}
	if len(ops) > 0 {
		c.log.Info("overlay changed", "operations", len(ops), "peers", len(peers))
	}
	return Result{Peers: peers, Skipped: skipped, Ops: ops}, c.kernel.Apply(link, ops)
}

// Cleanup removes the device and everything on it.
func (c *Controller) Cleanup() error { return c.kernel.DeleteDevice() }
