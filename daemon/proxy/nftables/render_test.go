package nftables

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
	"github.com/skein-net/skein/daemon/proxy"
)

// TestSlots: a run is taken from the first gap it fits, else after the
// last key taken.
func TestSlots(t *testing.T) {
	s := newSlots([]slotRange{{10, 5}, {0, 3}, {20, 2}})
	for _, tc := range []struct{ n, want int }{
		{4, 3},  // the gap 3-9 (7 keys)
		{3, 7},  // what is left of it
		{6, 22}, // no gap holds 6: after the last
		{5, 15}, // the gap 15-19
		{1, 28}, // every gap is full
		{2, 29},
	} {
		if got := s.take(tc.n); got != (slotRange{tc.want, tc.n}) {
			t.Errorf("take(%d) = %+v, want first %d", tc.n, got, tc.want)
		}
	}
}

// TestEndpointKeys drives the nftables rules of 40 Services through 60
// partial syncs, each changing a few Services' endpoints, into knftables'
// fake, and checks after each that the table it holds is right: every
// port's pick reads a run of keys holding exactly its endpoints, no two
// ports read the same key, the maps hold no other key, the ports that did
// not change kept their keys, and so did those whose endpoints changed
// but not their number.
func TestEndpointKeys(t *testing.T) {
	st := clustertest.Big(40, 4)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	f := newNFTRenderer(4, opts)
	fake := knftables.NewFake(knftables.IPv4Family, Table)
	var cache *nftCache
	rng := rand.New(rand.NewPCG(1, 2))
	type run struct {
		gen    uint64
		n      int
		picked string
	}
	last := map[string]run{}
	for step := range 60 {
		if step > 0 {
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(st.EndpointSlices))
				es := *st.EndpointSlices[i]
				es.Endpoints = nil
				for j := range 1 + rng.IntN(6) {
					node := "node2"
					es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 100+j, step, i)}, NodeName: &node})
				}
				st.EndpointSlices[i] = &es
			}
		}
		m := memo.Build(st, cfg)
		cache = syncFake(t, step, fake, f, &m, cache)

		elements := map[string]string{} // "map key" -> value
		for name, m := range fake.Table.Maps {
			if !strings.HasPrefix(name, mapEndpoints) {
				continue
			}
			if len(m.Elements) == 0 {
				t.Errorf("step %d: %s is left empty", step, name)
			}
			for _, e := range m.Elements {
				if _, err := strconv.Atoi(e.Key[0]); err != nil {
					t.Fatalf("step %d: key %q", step, e.Key[0])
				}
				elements[name+" "+e.Key[0]] = e.Value[0]
			}
		}
		read := map[string]string{}
		for _, sp := range m.Ports {
			var want []string
			for _, e := range sp.ClusterEndpoints() {
				want = append(want, fmt.Sprintf("%s . %d", e.Addr, e.Port))
			}
			rule := pickRule(fake, sp)
			var n, first int
			var group string
			_, mod, _ := strings.Cut(rule, "numgen random ")
			if _, err := fmt.Sscanf(mod, "mod %d offset %d map @%s", &n, &first, &group); err != nil {
				if len(want) != 1 || !strings.HasSuffix(rule, "dnat to "+sp.ClusterEndpoints()[0].AddrPort().String()) {
					t.Fatalf("step %d: %s picks with %q", step, sp.Name(), rule)
				}
				continue
			}
			var got []string
			for k := first; k < first+n; k++ {
				key := fmt.Sprintf("%s %d", group, k)
				if other, ok := read[key]; ok {
					t.Fatalf("step %d: %s and %s both read %s", step, sp.Name(), other, key)
				}
				read[key] = sp.Name()
				got = append(got, elements[key])
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: %s picks from %v, want %v", step, sp.Name(), got, want)
			}
			if l, ok := last[sp.ID()]; ok && (l.gen == sp.Gen() || l.n == n) && l.picked != rule {
				t.Errorf("step %d: %s, with as many endpoints as before, went from %q to %q", step, sp.Name(), l.picked, rule)
			}
			last[sp.ID()] = run{sp.Gen(), n, rule}
		}
		for k := range elements {
			if _, ok := read[k]; !ok {
				t.Errorf("step %d: %s (%s) is read by no port", step, k, elements[k])
			}
		}
	}
}

// pickRule is the rule of a port's ClusterIP chain that picks the
// endpoint.
func pickRule(fake *knftables.Fake, sp *proxy.ServicePort) string {
	for name, c := range fake.Table.Chains {
		if strings.HasPrefix(name, "svc-"+sp.ID()+"-") {
			return c.Rules[len(c.Rules)-1].Rule
		}
	}
	return ""
}

// syncFake writes m into fake as the backend would: whole the first time
// (cache nil), then only what changed. It returns the cache to pass next.
func syncFake(t *testing.T, step int, fake *knftables.Fake, f nftRenderer, m *proxy.Model, cache *nftCache) *nftCache {
	t.Helper()
	first := cache == nil
	ch, cache := f.desired(m, cache, !first)
	render := func(tx nftWriter) { f.transaction(tx, ch.before, ch.after, nil, nil) }
	if first {
		whole := f.whole(cache)
		render = func(tx nftWriter) { f.transaction(tx, nil, whole, nil, nil) }
	}
	tx := fake.NewTransaction()
	render(textTx{tx})
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("step %d: the sync fails: %v", step, err)
	}
	// What goes to the kernel goes over netlink: every operation encodes.
	w := newWireTx(f.fam)
	render(w)
	if err := w.finish(); err != nil {
		t.Fatalf("step %d: the transaction does not encode: %v", step, err)
	}
	return cache
}
