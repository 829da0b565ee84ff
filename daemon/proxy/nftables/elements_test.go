package nftables

import (
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
	"github.com/skein-net/skein/daemon/proxy"
)

// TestElementsOnly: an endpoint replaced by another is a change of map
// elements only (written over netlink), also when it is local (the
// hairpin set changes too); one endpoint more is not.
func TestElementsOnly(t *testing.T) {
	st := clustertest.Big(5, 3)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	f := newNFTRenderer(4, opts)
	m := memo.Build(st, cfg)
	_, cache := f.desired(&m, nil, false)
	local := "node1"
	for _, tc := range []struct {
		name     string
		change   func(es *discoveryv1.EndpointSlice)
		ok       bool
		del, add []string // a map element by its value, a set's by its key
	}{
		{"replaced", func(es *discoveryv1.EndpointSlice) { es.Endpoints[1].Addresses = []string{"10.101.9.9"} }, true,
			[]string{"10.101.0.2 . 8080"}, []string{"10.101.9.9 . 8080"}},
		{"replaced by a local one", func(es *discoveryv1.EndpointSlice) {
			es.Endpoints[1].Addresses, es.Endpoints[1].NodeName = []string{"10.64.1.9"}, &local
			// Endpoints take keys in address order: 10.100.0.2 moves.
		}, true, []string{"10.100.0.2 . 8080", "10.101.9.9 . 8080"}, []string{"10.100.0.2 . 8080", "10.64.1.9 . 10.64.1.9", "10.64.1.9 . 8080"}},
		{"one more", func(es *discoveryv1.EndpointSlice) {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.110.0.2"}})
		}, false, nil, nil},
	} {
		es := *st.EndpointSlices[2]
		es.Endpoints = slices.Clone(es.Endpoints)
		tc.change(&es)
		st.EndpointSlices[2] = &es
		m := memo.Build(st, cfg)
		var ch nftChange
		ch, cache = f.desired(&m, cache, true)
		del, add, ok := elementsOnly(ch.before, ch.after)
		if ok != tc.ok {
			t.Fatalf("%s: element-only %v, want %v", tc.name, ok, tc.ok)
		}
		if !ok {
			continue
		}
		show := func(es []nftElement, values map[string]map[string]elem) []string {
			var out []string
			for _, e := range es {
				if e.set == setHairpin {
					out = append(out, e.text())
				} else {
					out = append(out, values[e.set][e.text()].value())
				}
			}
			slices.Sort(out)
			return out
		}
		if got := show(del, ch.before.maps); !slices.Equal(got, tc.del) {
			t.Errorf("%s: deletes %v, want %v", tc.name, got, tc.del)
		}
		if got := show(add, ch.after.maps); !slices.Equal(got, tc.add) {
			t.Errorf("%s: adds %v, want %v", tc.name, got, tc.add)
		}
	}
}
