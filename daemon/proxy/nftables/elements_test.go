package nftables

import (
	"fmt"
	"slices"
	"strings"
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

// TestBatchElements: runs of element commands on one set become one
// command, at most maxBatch elements long; nothing else moves.
func TestBatchElements(t *testing.T) {
	in := "add chain ip skein c\n" +
		"add element ip skein m { 1 : a }\nadd element ip skein m { 2 : b }\n" +
		"delete element ip skein m { 3 }\n" +
		"add element ip skein n { x . y }\nadd element ip skein m { 4 : d }\n" +
		"add rule ip skein c jump d\n"
	want := "add chain ip skein c\n" +
		"add element ip skein m { 1 : a, 2 : b }\n" +
		"delete element ip skein m { 3 }\n" +
		"add element ip skein n { x . y }\nadd element ip skein m { 4 : d }\n" +
		"add rule ip skein c jump d\n"
	batched := func(text string) string {
		var b strings.Builder
		if err := batchElements(&b, text); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := batched(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	var b strings.Builder
	for i := range maxBatch + 5 {
		fmt.Fprintf(&b, "add element ip skein m { %d : v }\n", i)
	}
	got := strings.Split(strings.TrimSuffix(batched(b.String()), "\n"), "\n")
	if len(got) != 2 || strings.Count(got[0], ":") != maxBatch || strings.Count(got[1], ":") != 5 || !strings.HasSuffix(got[1], "1004 : v }") {
		t.Errorf("%d elements in batches: %d lines, %q ... %q", maxBatch+5, len(got), got[0][:40], got[len(got)-1])
	}
}
