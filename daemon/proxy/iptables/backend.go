package iptables

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"github.com/skein-net/skein/daemon/hooks"
	"github.com/skein-net/skein/daemon/proxy"
)

// hookJumps are the proxy's jumps from the built-in chains; the filter
// ones only for new connections.
var hookJumps = []hooks.Jump{
	{Table: "nat", Chain: "PREROUTING", Rule: []string{"-j", iptServices}},
	{Table: "nat", Chain: "OUTPUT", Rule: []string{"-j", iptServices}},
	{Table: "nat", Chain: "POSTROUTING", Rule: []string{"-j", iptPostrouting}},
	{Table: "filter", Chain: "INPUT", Rule: newOnly(iptServices)},
	{Table: "filter", Chain: "FORWARD", Rule: newOnly(iptServices)},
	{Table: "filter", Chain: "OUTPUT", Rule: newOnly(iptServices)},
}

func newOnly(target string) []string {
	return []string{"-m", "conntrack", "--ctstate", "NEW", "-j", target}
}

// Backend is the iptables backend (either iptables flavour; rules go in
// through iptables-restore, one transaction per family per sync).
type Backend struct {
	opts  proxy.RuleOptions
	hooks *hooks.Owner
	cache map[int]*iptCache
	// synced tells, per family, that the kernel holds what the cache
	// does: the last sync landed.
	synced map[int]bool
}

// New returns the backend; it fails without iptables-restore.
func New(o proxy.RuleOptions) (*Backend, error) {
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	owner := o.Hooks
	if owner == nil {
		owner = &hooks.Owner{}
	}
	return &Backend{opts: o, hooks: owner, cache: map[int]*iptCache{}, synced: map[int]bool{}}, nil
}

// Name implements Backend.
func (b *Backend) Name() string { return "iptables" }

func tool(fam int, name string) string {
	if fam == 6 {
		return "ip6" + strings.TrimPrefix(name, "ip")
	}
	return name
}

// Sync implements Backend.
func (b *Backend) Sync(ctx context.Context, m *proxy.Model, full bool) (int, error) {
	rules := 0
	for _, fam := range []int{4, 6} {
		if _, err := exec.LookPath(tool(fam, "iptables-restore")); err != nil {
			if fam == 6 && !slices.ContainsFunc(m.Ports, func(sp *proxy.ServicePort) bool { return sp.Family == 6 }) {
				continue
			}
			return rules, fmt.Errorf("no %s: %w", tool(fam, "iptables-restore"), err)
		}
		f := newIPTRenderer(fam, b.opts)
		var ch iptChange
		partial := !full && b.synced[fam]
		ch, b.cache[fam] = f.desired(m, b.cache[fam], partial)
		var text []byte
		needHooks := !partial
		if !partial {
			// What to delete: the chains the kernel has. After a good sync
			// those are the ones wanted now and the ones that just went.
			var existing map[string][]string
			cur := f.whole(b.cache[fam])
			if b.synced[fam] {
				existing = map[string][]string{}
				for _, r := range []iptRules{cur, ch.before} {
					for t, chains := range r {
						existing[t] = append(existing[t], slices.Sorted(maps.Keys(chains))...)
					}
				}
			} else {
				var err error
				if existing, err = ownChains(ctx, fam); err != nil {
					return rules, err
				}
			}
			text = restoreText(nil, cur, existing)
		} else {
			text = restoreText(ch.before, ch.after, nil)
		}
		b.synced[fam] = false
		if len(text) > 0 {
			if err := restore(ctx, fam, text); err != nil {
				return rules, err
			}
		}
		if needHooks {
			if err := b.ensureHooks(fam); err != nil {
				return rules, err
			}
		}
		b.synced[fam] = true
		rules += b.cache[fam].count
	}
	return rules, nil
}

func restore(ctx context.Context, fam int, text []byte) error {
	cmd := exec.CommandContext(ctx, tool(fam, "iptables-restore"), "--noflush", "--wait")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", tool(fam, "iptables-restore"), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ownChains lists the proxy's chains the kernel has, per table.
func ownChains(ctx context.Context, fam int) (map[string][]string, error) {
	out := map[string][]string{}
	for _, table := range []string{"filter", "nat"} {
		data, err := exec.CommandContext(ctx, tool(fam, "iptables-save"), "-t", table).Output()
		if err != nil {
			return nil, fmt.Errorf("%s -t %s: %w", tool(fam, "iptables-save"), table, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, ":") {
				if strings.HasPrefix(line, "-A") {
					break // declarations come first
				}
				continue
			}
			name, _, _ := strings.Cut(line[1:], " ")
			if ownChain(name) {
				out[table] = append(out[table], name)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s -t %s: %w", tool(fam, "iptables-save"), table, err)
		}
	}
	return out, nil
}

func (b *Backend) ensureHooks(fam int) error {
	ipt, err := hooks.New(fam)
	if err != nil {
		return err
	}
	for _, h := range hookJumps {
		if err := b.hooks.Ensure(ipt, h); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup implements Backend: the jumps, then every chain of the proxy.
func (b *Backend) Cleanup(ctx context.Context) error {
	var errs []error
	for _, fam := range []int{4, 6} {
		b.synced[fam] = false
		if _, err := exec.LookPath(tool(fam, "iptables-save")); err != nil {
			continue // no iptables of that family: nothing of ours there
		}
		// One listing per table tells whether there is anything to do:
		// skeind cleans up the other backend on every start.
		existing, err := ownChains(ctx, fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(existing["filter"])+len(existing["nat"]) == 0 {
			continue // no chain of ours, so no jump to one either
		}
		ipt, err := hooks.New(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, h := range hookJumps {
			if err := b.hooks.Remove(ipt, h); err != nil {
				errs = append(errs, err)
			}
		}
		if text := restoreText(nil, iptRules{}, existing); len(text) > 0 {
			errs = append(errs, restore(ctx, fam, text))
		}
	}
	return errors.Join(errs...)
}
