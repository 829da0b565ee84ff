package conflist

import (
	"context"
	"log/slog"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/node"
)

// Config is what the conflist says besides this node's pod CIDRs and MTU.
type Config struct {
	Path          string
	Name          string // the CNI network's name
	CNIVersion    string
	Bridge        string // "" for the plugin's default
	DNS           types.DNS
	ClusterDomain string
	DataDir       string // "" for the plugin's default
	// Node says how this node finds itself and its underlay.
	Node node.Options
}

// Controller writes this node's conflist: the skein plugin with the
// node's pod CIDRs as ranges and an MTU that leaves room for VXLAN, then
// portmap. It writes only when the content changes (containerd reloads
// on every change), and never while this node or its pod CIDRs are
// missing or refused: the last good file stays.
type Controller struct {
	cfg Config
	log *slog.Logger
	why string
}

// New returns the controller.
func New(cfg Config, log *slog.Logger) *Controller {
	return &Controller{cfg: cfg, log: log, why: "no snapshot of the cluster yet"}
}

// Ready says why the conflist is not written yet, or "" once it is.
func (c *Controller) Ready() string { return c.why }

// Sync renders the conflist from the snapshot and writes it if it changed.
func (c *Controller) Sync(_ context.Context, st *cluster.State) error {
	local, why, _, err := node.Find(st, c.cfg.Node)
	if err != nil {
		return err
	}
	if why != "" {
		c.why = why
		return nil
	}
	mtu := local.MTU - node.Overhead(local.Underlay)
	list, err := conf.RenderConflist(conf.ConflistOptions{
		Name: c.cfg.Name, CNIVersion: c.cfg.CNIVersion, Bridge: c.cfg.Bridge, PodCIDRs: local.PodCIDRs, MTU: mtu,
		DNS: c.cfg.DNS, ClusterDomain: c.cfg.ClusterDomain, DataDir: c.cfg.DataDir, PortMap: true,
	})
	if err != nil {
		return err
	}
	changed, err := Write(c.cfg.Path, list)
	if err != nil {
		return err
	}
	if changed {
		c.log.Info("wrote the conflist", "path", c.cfg.Path, "podCIDRs", local.PodCIDRs, "mtu", mtu)
	}
	c.why = ""
	return nil
}

// Cleanup removes the conflist.
func (c *Controller) Cleanup(context.Context) error { return Remove(c.cfg.Path) }
