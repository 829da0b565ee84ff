// Package masq owns the rules that let pod traffic leave the cluster and
// cross this node: traffic from pods to anything that is neither a pod
// nor a node leaves with the node's address (masquerade), pod-to-pod and
// pod-to-node traffic is never NATed, and forwarding to and from pods is
// accepted even when the host's iptables FORWARD policy is DROP.
//
// The NAT lives in one nftables table, "inet skein", written whole in one
// transaction per sync. The forwarding accept goes into iptables (chain
// SKEIN-FORWARD, one jump from FORWARD, written with iptables-restore
// --noflush), where a host's DROP policy is set: an accept in an
// nftables table of our own could not overrule a drop in another table,
// so none is kept there. SKEIN-FORWARD holds the union of the pod CIDRs
// in as few prefixes as cover it exactly, since iptables walks its rules
// one by one for every forwarded packet: the /24s of a 1,000-node
// cluster allocated from one cluster CIDR are a handful of rules, not
// 2,000.
package masq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"go4.org/netipx"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/hooks"
)

// Names of what the package owns.
const (
	Table        = "skein"
	ForwardChain = "SKEIN-FORWARD"
)

// Want is what the rules are built from.
type Want struct {
	Masquerade bool
	PodNets    []netip.Prefix // every node's pod CIDRs, this one's included
	NodeIPs    []netip.Addr   // every node's underlay address
}

// Transaction renders the nftables transaction that writes the table
// whole: created if missing, emptied, filled.
func Transaction(nft knftables.Interface, w Want) *knftables.Transaction {
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("skein: pod masquerade and forwarding")})
	tx.Flush(&knftables.Table{})
	sets := map[string]string{"pods4": "ipv4_addr", "pods6": "ipv6_addr", "nodes4": "ipv4_addr", "nodes6": "ipv6_addr"}
	for _, name := range sortedKeys(sets) {
		tx.Add(&knftables.Set{Name: name, Type: sets[name], Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		tx.Flush(&knftables.Set{Name: name})
	}
	for _, p := range sortedPrefixes(w.PodNets) {
		tx.Add(&knftables.Element{Set: "pods" + fam(p.Addr()), Key: []string{p.String()}})
	}
	for _, a := range sortedAddrs(w.NodeIPs) {
		tx.Add(&knftables.Element{Set: "nodes" + fam(a), Key: []string{a.String()}})
	}
	tx.Add(&knftables.Chain{Name: "postrouting", Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	// Earlier versions kept an accepting forward chain here, which could
	// never change a verdict but cost every forwarded packet its
	// lookups: created if missing, then deleted.
	tx.Add(&knftables.Chain{Name: "forward"})
	tx.Delete(&knftables.Chain{Name: "forward"})
	for _, f := range []struct{ ip, n string }{{"ip", "4"}, {"ip6", "6"}} {
		if w.Masquerade {
			tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat(
				f.ip, "saddr", "@pods"+f.n, f.ip, "daddr", "!=", "@pods"+f.n, f.ip, "daddr", "!=", "@nodes"+f.n, "masquerade"),
				Comment: knftables.PtrTo("pods to outside the cluster leave with the node's address")})
		}
	}
	return tx
}

// IPTablesRestore renders the SKEIN-FORWARD chain of one family for
// iptables-restore --noflush: declaring the chain empties it, and the
// whole table is committed at once, so the chain is never seen half
// written.
func IPTablesRestore(w Want, family int) []byte {
	var b bytes.Buffer
	b.WriteString("*filter\n:" + ForwardChain + " - [0:0]\n")
	for _, p := range covering(w.PodNets, family) {
		fmt.Fprintf(&b, "-A %s -s %s -m comment --comment \"skein: from pods\" -j ACCEPT\n", ForwardChain, p)
		fmt.Fprintf(&b, "-A %s -d %s -m comment --comment \"skein: to pods\" -j ACCEPT\n", ForwardChain, p)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// Config says what to build.
type Config struct {
	// Masquerade: pod traffic to outside the cluster leaves with the
	// node's address. Off, only forwarding is opened.
	Masquerade bool
	// NodeIP is this node's underlay address when a flag sets it (no
	// Node object need list it).
	NodeIP netip.Addr
}

// Deps are what the controller works through.
type Deps struct {
	Log *slog.Logger
	// Hooks places the jump to SKEIN-FORWARD among every controller's
	// jumps from FORWARD.
	Hooks *hooks.Owner
}

// Controller applies the rules.
type Controller struct {
	cfg   Config
	nft   knftables.Interface
	hooks *hooks.Owner
	log   *slog.Logger
	ready bool
}

// New returns the controller; it fails when nftables cannot be used.
func New(cfg Config, deps Deps) (*Controller, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if deps.Hooks == nil {
		deps.Hooks = &hooks.Owner{}
	}
	return &Controller{cfg: cfg, nft: nft, hooks: deps.Hooks, log: deps.Log}, nil
}

// Ready says why the rules are not written yet, or "" once they are.
func (c *Controller) Ready() string {
	if c.ready {
		return ""
	}
	return "the masquerade and forwarding rules are not written yet"
}

// WantOf is what the rules hold for a snapshot: the pod networks and the
// node addresses of the cluster (Facts), so that traffic between pods
// and nodes is never masqueraded.
func WantOf(st *cluster.State, cfg Config) Want {
	f := st.Facts()
	w := Want{Masquerade: cfg.Masquerade, PodNets: f.PodNets, NodeIPs: f.NodeIPs}
	if cfg.NodeIP.IsValid() && !slices.Contains(w.NodeIPs, cfg.NodeIP.Unmap()) {
		w.NodeIPs = append(slices.Clone(w.NodeIPs), cfg.NodeIP.Unmap())
	}
	return w
}

// Sync writes the rules the snapshot asks for.
func (c *Controller) Sync(ctx context.Context, st *cluster.State) error {
	if err := c.Apply(ctx, WantOf(st, c.cfg)); err != nil {
		return err
	}
	c.ready = true
	return nil
}

// Apply writes the nftables table and the iptables forward chains.
func (c *Controller) Apply(ctx context.Context, w Want) error {
	if err := c.nft.Run(ctx, Transaction(c.nft, w)); err != nil {
		return fmt.Errorf("nftables table %s: %w", Table, err)
	}
	var errs []error
	for _, f := range []struct {
		n       int
		restore string
	}{{4, "iptables-restore"}, {6, "ip6tables-restore"}} {
		errs = append(errs, c.syncIPTables(ctx, w, f.n, f.restore))
	}
	return errors.Join(errs...)
}

func (c *Controller) syncIPTables(ctx context.Context, w Want, family int, restore string) error {
	if _, err := exec.LookPath(restore); err != nil {
		c.log.Warn("no "+restore+"; pod forwarding is not opened in iptables", "family", family)
		return nil
	}
	cmd := exec.CommandContext(ctx, restore, "--noflush", "--wait")
	cmd.Stdin = bytes.NewReader(IPTablesRestore(w, family))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", restore, err, strings.TrimSpace(string(out)))
	}
	ipt, err := hooks.New(family)
	if err != nil {
		return err
	}
	return c.hooks.Ensure(ipt, forwardJump)
}

// forwardJump is the masquerade controller's jump in FORWARD; the hooks
// Owner places it below the Service proxy's.
var forwardJump = hooks.Jump{Table: "filter", Chain: "FORWARD", Rule: []string{"-j", ForwardChain}}

// Cleanup removes the table, the jumps and the chains. What is already
// gone is no error.
func (c *Controller) Cleanup(ctx context.Context) error {
	var errs []error
	tx := c.nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := c.nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete nftables table %s: %w", Table, err))
	}
	for _, fam := range []int{4, 6} {
		h, err := hooks.New(fam)
		if err != nil {
			continue // no iptables of that family: nothing of ours there
		}
		if err := c.hooks.Remove(h, forwardJump); err != nil {
			errs = append(errs, err)
		}
		ipt, err := iptables.New(iptables.IPFamily(protoOf(fam)), iptables.Timeout(5))
		if err != nil {
			continue
		}
		if ok, _ := ipt.ChainExists("filter", ForwardChain); ok {
			errs = append(errs, ipt.ClearAndDeleteChain("filter", ForwardChain))
		}
	}
	return errors.Join(errs...)
}

func protoOf(fam int) iptables.Protocol {
	if fam == 6 {
		return iptables.ProtocolIPv6
	}
	return iptables.ProtocolIPv4
}

func fam(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedPrefixes(in []netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), in...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// covering returns the fewest prefixes of the family whose union is
// exactly that of nets, in address order.
func covering(nets []netip.Prefix, family int) []netip.Prefix {
	var b netipx.IPSetBuilder
	for _, p := range nets {
		if p.Addr().Is4() == (family == 4) {
			b.AddPrefix(p.Masked())
		}
	}
	set, _ := b.IPSet() // the builder is only added to: it has no error to report
	return set.Prefixes()
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), in...)
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
