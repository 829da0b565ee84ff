package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	gnft "github.com/google/nftables"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/nftwire"
	"github.com/skein-net/skein/daemon/proxy"
)

// Backend is the nftables backend: one table per family.
type Backend struct {
	opts  proxy.RuleOptions
	nft   map[int]knftables.Interface
	cache map[int]*nftCache
	// synced tells, per family, that the kernel holds what the cache
	// does: the last sync landed.
	synced map[int]bool
	sock   *nftwire.Conn // the writes' netlink socket; nil until the first
	// left is, per family, the outline of the table the last good sync
	// left in the kernel: what Drift compares.
	left map[int]*outline
}

// outline is a family's table in outline: the table itself, and the
// rule counts of its fixed chains (the first hop of every packet).
type outline struct {
	table nftwire.TableInfo
	rules map[string]int
}

// transact writes the batch over the lasting socket; after a failure the
// socket is dropped (the next write opens another).
func (b *Backend) transact(w *wireTx) error {
	if err := w.finish(); err != nil {
		return err
	}
	if b.sock == nil {
		sock, err := nftwire.Open()
		if err != nil {
			return err
		}
		b.sock = sock
	}
	if err := b.sock.Transact(w.b); err != nil {
		b.sock.Close()
		b.sock = nil
		return err
	}
	return nil
}

// existing lists the chains and the sets (maps among them) of the
// family's table, none when it does not exist. Over netlink: nft would
// read every element of every set of the family first (half a second
// at ten thousand Services).
func existing(f nftRenderer) (chains, sets []string, err error) {
	conn, err := gnft.New()
	if err != nil {
		return nil, nil, err
	}
	family := gnft.TableFamily(nfproto(f.fam))
	tables, err := conn.ListTablesOfFamily(family)
	if err != nil {
		return nil, nil, err
	}
	if !slices.ContainsFunc(tables, func(t *gnft.Table) bool { return t.Name == Table }) {
		return nil, nil, nil
	}
	all, err := conn.ListChainsOfTableFamily(family)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range all {
		if c.Table != nil && c.Table.Name == Table {
			chains = append(chains, c.Name)
		}
	}
	ss, err := conn.GetSets(&gnft.Table{Name: Table, Family: family})
	if err != nil {
		return nil, nil, err
	}
	for _, s := range ss {
		sets = append(sets, s.Name)
	}
	return chains, sets, nil
}

// New returns the backend; it fails when nftables cannot be used.
func New(o proxy.RuleOptions) (*Backend, error) {
	b := &Backend{
		opts: o, nft: map[int]knftables.Interface{}, cache: map[int]*nftCache{},
		synced: map[int]bool{}, left: map[int]*outline{},
	}
	for fam, family := range map[int]knftables.Family{4: knftables.IPv4Family, 6: knftables.IPv6Family} {
		nft, err := knftables.New(family, Table)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		b.nft[fam] = nft
	}
	return b, nil
}

// Name implements Backend.
func (b *Backend) Name() string { return "nftables" }

// Sync implements Backend.
func (b *Backend) Sync(ctx context.Context, m *proxy.Model, full bool) (int, error) {
	rules := 0
	for _, fam := range []int{4, 6} {
		f := newNFTRenderer(fam, b.opts)
		var ch nftChange
		partial := !full && b.synced[fam]
		ch, b.cache[fam] = f.desired(m, b.cache[fam], partial)
		w := newWireTx(fam)
		var render func(nftWriter)
		if !partial {
			cur := f.whole(b.cache[fam])
			// What to delete: what the kernel has. After a good sync that
			// is what is wanted now and what just went; else, listed.
			var chains, sets []string
			if b.synced[fam] {
				for _, r := range []*nftRules{cur, ch.before} {
					chains = append(chains, slices.Collect(maps.Keys(r.chains))...)
					sets = append(sets, slices.Collect(maps.Keys(r.affinity))...)
					sets = append(sets, slices.Collect(maps.Keys(r.maps))...)
				}
			} else {
				var err error
				if chains, sets, err = existing(f); err != nil {
					return rules, fmt.Errorf("list the table %s %s: %w", f.ip, Table, err)
				}
			}
			render = func(tx nftWriter) { f.transaction(tx, nil, cur, chains, sets) }
			w.b.Reserve(b.cache[fam].count + len(chains) + len(sets))
		} else if del, add, ok := elementsOnly(ch.before, ch.after); ok {
			render = func(tx nftWriter) {
				for _, e := range del {
					tx.Element("delete", e.set, e.elem)
				}
				for _, e := range add {
					tx.Element("add", e.set, e.elem)
				}
			}
		} else {
			render = func(tx nftWriter) { f.transaction(tx, ch.before, ch.after, nil, nil) }
		}
		render(w)
		if w.b.Ops() > 0 || w.err != nil {
			b.synced[fam] = false // unknown until the transaction is known to have landed
			delete(b.left, fam)
			if err := b.transact(w); err != nil {
				return rules, fmt.Errorf("nftables table %s %s: %w", f.ip, Table, err)
			}
			// The transaction landed: a failed read-back is no failed sync,
			// only an outline unknown, which Drift reports (a full sync then).
			if err := b.note(fam, !partial); err != nil {
				delete(b.left, fam)
			}
		}
		b.synced[fam] = true
		rules += b.cache[fam].count
	}
	return rules, nil
}

// note records the outline of the family's table the kernel now holds:
// the table after every write, its fixed chains' rules after a full one
// (nothing else writes them).
func (b *Backend) note(fam int, full bool) error {
	prev := b.left[fam]
	t, _, err := b.sock.Table(nfproto(fam), Table)
	if err != nil {
		return err
	}
	o := &outline{table: t}
	if full || prev == nil {
		o.rules = map[string]int{}
		for _, c := range fixedChains {
			if o.rules[c], err = b.sock.Rules(nfproto(fam), Table, c); err != nil {
				return err
			}
		}
	} else {
		o.rules = prev.rules
	}
	b.left[fam] = o
	return nil
}

// Drift implements proxy.Checker: what of the outline the last sync left
// in each family's table has changed since (the table deleted or made
// again, chains or sets added or deleted, a fixed chain's rules changed),
// "" when nothing. A few netlink reads, however large the table: an
// edited rule or element inside a Service's own chain or map is not
// seen, and waits for that Service's next change or the next full sync.
// When something changed, the backend forgets what it knew the kernel
// holds: the full sync that follows lists the table and deletes what it
// does not want.
func (b *Backend) Drift(ctx context.Context) string {
	if b.sock == nil {
		return "the rules are not written yet"
	}
	for _, fam := range []int{4, 6} {
		if what := b.drift(fam); what != "" {
			b.synced[fam] = false
			return what
		}
	}
	return ""
}

func (b *Backend) drift(fam int) string {
	ip := newNFTRenderer(fam, b.opts).ip
	was := b.left[fam]
	if was == nil {
		return fmt.Sprintf("table %s %s: unknown since the last write", ip, Table)
	}
	t, ok, err := b.sock.Table(nfproto(fam), Table)
	switch {
	case err != nil:
		return fmt.Sprintf("table %s %s cannot be read: %v", ip, Table, err)
	case !ok:
		return fmt.Sprintf("table %s %s is gone", ip, Table)
	case t.Handle != was.table.Handle:
		return fmt.Sprintf("table %s %s was made again", ip, Table)
	case t.Use != was.table.Use:
		return fmt.Sprintf("table %s %s holds %d chains and sets, not %d", ip, Table, t.Use, was.table.Use)
	}
	for _, c := range fixedChains {
		n, err := b.sock.Rules(nfproto(fam), Table, c)
		if err != nil {
			return fmt.Sprintf("chain %s of table %s %s cannot be read: %v", c, ip, Table, err)
		}
		if n != was.rules[c] {
			return fmt.Sprintf("chain %s of table %s %s holds %d rules, not %d", c, ip, Table, n, was.rules[c])
		}
	}
	return ""
}

// Cleanup implements Backend: both tables go.
func (b *Backend) Cleanup(ctx context.Context) error {
	var errs []error
	for _, fam := range []int{4, 6} {
		tx := b.nft[fam].NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := b.nft[fam].Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete nftables table %s: %w", Table, err))
		}
		b.synced[fam] = false
		delete(b.left, fam)
	}
	b.sock.Close()
	b.sock = nil
	return errors.Join(errs...)
}
