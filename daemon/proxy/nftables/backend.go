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
	b := &Backend{opts: o, nft: map[int]knftables.Interface{}, cache: map[int]*nftCache{}, synced: map[int]bool{}}
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
			if err := b.transact(w); err != nil {
				return rules, fmt.Errorf("nftables table %s %s: %w", f.ip, Table, err)
			}
		}
		b.synced[fam] = true
		rules += b.cache[fam].count
	}
	return rules, nil
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
	}
	b.sock.Close()
	b.sock = nil
	return errors.Join(errs...)
}
