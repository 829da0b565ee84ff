package nftables

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/internal/golden"
)

var node1 = proxy.Config{NodeName: "node1", Families: []int{4, 6}}

func load(t *testing.T, edit func(string) string) *proxy.Model {
	t.Helper()
	m := proxy.Build(proxytest.State(t, edit), node1)
	return &m
}

var opts = proxy.RuleOptions{Bridge: "cni0"}

func nftText(fam int, prev, cur *proxy.Model) string {
	f := newNFTRenderer(fam, opts)
	tx := newFakeTx(fam)
	if prev == nil {
		_, cache := f.desired(cur, nil, false)
		f.transaction(tx, nil, f.whole(cache), nil, nil)
		return tx.String()
	}
	_, cache := f.desired(prev, nil, false)
	ch, _ := f.desired(cur, cache, true)
	f.transaction(tx, ch.before, ch.after, nil, nil)
	return tx.String()
}

// TestRulesets renders the golden cluster for both families: full syncs,
// then the partial sync of one change (the iptables backend has the same
// test, from the same cluster).
func TestRulesets(t *testing.T) {
	m, changed := load(t, nil), load(t, proxytest.RemoveEndpoint)
	for _, fam := range []int{4, 6} {
		golden.Check(t, "full"+string(rune('0'+fam))+".nft", nftText(fam, nil, m))
	}
	golden.Check(t, "partial4.nft", nftText(4, m, changed))
	// Nothing changed: nothing written.
	if got := nftText(4, m, m); got != "" {
		t.Errorf("an unchanged model writes:\n%s", got)
	}
}

func newFakeTx(fam int) textTx {
	kf := knftables.IPv4Family
	if fam == 6 {
		kf = knftables.IPv6Family
	}
	return textTx{knftables.NewFake(kf, Table).NewTransaction()}
}

// TestPartialMatchesWhole drives 30 Services through 80 random changes —
// endpoints (local and remote, ready or not) come and go, Services come
// and go, take session affinity, a NodePort, an external address that
// others share — and checks after each partial sync that knftables' fake
// holds exactly what a full sync of the same rules writes, that the
// rules count is right, and that the verdict maps and the hairpin set are
// what a render from nothing gives (where Services share a key, the same
// one wins).
func TestPartialMatchesWhole(t *testing.T) {
	ctx := context.Background()
	churn := proxytest.NewChurn(3, 4, 30)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	f := newNFTRenderer(4, opts)
	partial := knftables.NewFake(knftables.IPv4Family, Table)
	var cache *nftCache
	for step := range 80 {
		churn.Change()
		m := memo.Build(churn.State(), cfg)
		cache = syncFake(t, step, partial, f, &m, cache)
		count := cache.count
		whole := f.whole(cache)
		if count != whole.count() {
			t.Errorf("step %d: the partial syncs count %d rules, the table has %d", step, count, whole.count())
		}
		full := knftables.NewFake(knftables.IPv4Family, Table)
		tx := full.NewTransaction()
		f.transaction(textTx{tx}, nil, whole, nil, nil)
		if err := full.Run(ctx, tx); err != nil {
			t.Fatalf("step %d: the full sync fails: %v", step, err)
		}
		if got, want := sortedLines(partial.Dump()), sortedLines(full.Dump()); got != want {
			t.Fatalf("step %d: after partial syncs the table is\n%s\nbut a full sync writes\n%s", step, got, want)
		}
		_, fresh := f.desired(&m, nil, false)
		scratch := f.whole(fresh)
		for _, mp := range verdictMaps {
			if !maps.Equal(whole.maps[mp], scratch.maps[mp]) {
				t.Fatalf("step %d: %s is %v, from nothing %v", step, mp, whole.maps[mp], scratch.maps[mp])
			}
		}
		// Each endpoints map holds its ports' endpoints, no more.
		groups := map[string]map[string]elem{}
		for _, c := range cache.chunks {
			if c.group != "" {
				if groups[c.group] == nil {
					groups[c.group] = map[string]elem{}
				}
				maps.Copy(groups[c.group], c.r.maps[c.group])
			}
		}
		for name, elems := range whole.maps {
			if strings.HasPrefix(name, mapEndpoints) && !maps.Equal(elems, groups[name]) {
				t.Fatalf("step %d: %s holds %v, its ports' endpoints are %v", step, name, elems, groups[name])
			}
		}
		for name := range groups {
			if _, ok := whole.maps[name]; !ok {
				t.Fatalf("step %d: no map %s", step, name)
			}
		}
		if !slices.Equal(whole.sets[setHairpin], scratch.sets[setHairpin]) {
			t.Fatalf("step %d: hairpin is %v, from nothing %v", step, whole.sets[setHairpin], scratch.sets[setHairpin])
		}
	}
}

// sortedLines is a fake's dump in an order that does not depend on the
// order elements were added in.
func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
