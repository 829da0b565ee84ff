package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/cluster"
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
	st := bigState(40, 4)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	f := newNFTFamily(4, opts)
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
			if l, ok := last[sp.ID()]; ok && (l.gen == sp.gen || l.n == n) && l.picked != rule {
				t.Errorf("step %d: %s, with as many endpoints as before, went from %q to %q", step, sp.Name(), l.picked, rule)
			}
			last[sp.ID()] = run{sp.gen, n, rule}
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
func pickRule(fake *knftables.Fake, sp *ServicePort) string {
	for name, c := range fake.Table.Chains {
		if strings.HasPrefix(name, "svc-"+sp.ID()+"-") {
			return c.Rules[len(c.Rules)-1].Rule
		}
	}
	return ""
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
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 30
	svcs := make([]*corev1.Service, n)
	eslices := make([]*discoveryv1.EndpointSlice, n)
	port, pname, proto := int32(8080), "http", corev1.ProtocolTCP
	render := func(i, step int) {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i), Namespace: "ns"},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", i+1),
				Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
		if rng.IntN(3) == 0 {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = int32(30000 + rng.IntN(4)) // shared, now and then
		}
		if rng.IntN(3) == 0 {
			s.Spec.ExternalIPs = []string{"192.0.2.1"} // shared by every Service that has it
		}
		if rng.IntN(4) == 0 {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}
		if rng.IntN(4) == 0 {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		svcs[i] = s
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: s.Name + "-1", Namespace: "ns",
			Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
		for j := range rng.IntN(5) {
			node, ready := fmt.Sprintf("node%d", 1+rng.IntN(2)), rng.IntN(4) != 0
			// Addresses repeat across Services: a local pod behind two.
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.64.%d.%d", 1+j%2, rng.IntN(8))},
				NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		eslices[i] = es
	}
	for i := range n {
		render(i, 0)
	}
	state := func() *cluster.State {
		st := &cluster.State{Nodes: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
			Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}}}
		for i := range n {
			if svcs[i] != nil {
				st.Services = append(st.Services, svcs[i])
				st.EndpointSlices = append(st.EndpointSlices, eslices[i])
			}
		}
		return st
	}
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	f := newNFTFamily(4, opts)
	partial := knftables.NewFake(knftables.IPv4Family, Table)
	var cache *nftCache
	fi := newIPTFamily(4, opts)
	var icache *iptCache
	kernel := iptRules{} // what iptables-restore would have made of the texts
	for step := range 80 {
		for range 1 + rng.IntN(4) {
			i := rng.IntN(n)
			if rng.IntN(5) == 0 && svcs[i] != nil {
				svcs[i] = nil
			} else {
				render(i, step)
			}
		}
		m := memo.Build(state(), cfg)
		var ich iptChange
		ich, icache = fi.desired(&m, icache, true)
		if step == 0 {
			applyRestore(t, kernel, restoreText(nil, fi.whole(icache), nil))
		} else {
			applyRestore(t, kernel, restoreText(ich.before, ich.after, nil))
		}
		icount := icache.count
		if whole := fi.whole(icache); !reflect.DeepEqual(kernel, whole) || icount != whole.count() {
			t.Fatalf("step %d: after partial syncs iptables holds (%d rules counted)\n%v\nbut a full sync writes (%d)\n%v", step, icount, kernel, whole.count(), whole)
		}
		_, ifresh := fi.desired(&m, nil, false)
		if got, want := fi.whole(icache), fi.whole(ifresh); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: iptables rules from the cache\n%v\nfrom nothing\n%v", step, got, want)
		}
		cache = syncFake(t, step, partial, f, &m, cache)
		count := cache.count
		whole := f.whole(cache)
		if count != whole.count() {
			t.Errorf("step %d: the partial syncs count %d rules, the table has %d", step, count, whole.count())
		}
		full := knftables.NewFake(knftables.IPv4Family, Table)
		tx := full.NewTransaction()
		f.transaction(tx, nil, whole, nil, nil)
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
		groups := map[string]map[string]string{}
		for _, c := range cache.chunks {
			if c.group != "" {
				if groups[c.group] == nil {
					groups[c.group] = map[string]string{}
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

// TestElementsOnly: an endpoint replaced by another is a change of map
// elements only (written over netlink), also when it is local (the
// hairpin set changes too); one endpoint more is not.
func TestElementsOnly(t *testing.T) {
	st := bigState(5, 3)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	f := newNFTFamily(4, opts)
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
		show := func(es []nftElement, values map[string]map[string]string) []string {
			var out []string
			for _, e := range es {
				if e.set == setHairpin {
					out = append(out, e.key)
				} else {
					out = append(out, values[e.set][e.key])
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

// TestMemoOrder: the model's ports are sorted by Service whatever the
// snapshot's order, also when the order changes between builds.
func TestMemoOrder(t *testing.T) {
	st := bigState(12, 1)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	for step := range 4 {
		if step == 2 {
			slices.Reverse(st.Services)
		}
		if step == 3 {
			st.Services = append(st.Services[1:], st.Services[0])
		}
		m := memo.Build(st, cfg)
		if len(m.Ports) != 12 || !slices.IsSortedFunc(m.Ports, func(a, b *ServicePort) int {
			if c := cmp.Compare(a.Namespace+"/"+a.Service, b.Namespace+"/"+b.Service); c != 0 {
				return c
			}
			return -1 // twice
		}) {
			var names []string
			for _, sp := range m.Ports {
				names = append(names, sp.Name())
			}
			t.Fatalf("step %d: ports %v", step, names)
		}
	}
}

// applyRestore plays iptables-restore --noflush text onto kernel: a chain
// declared is emptied (made if new), -A appends, -X deletes.
func applyRestore(t *testing.T, kernel iptRules, text []byte) {
	t.Helper()
	var table string
	for _, l := range strings.Split(string(text), "\n") {
		switch {
		case l == "" || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			table = l[1:]
			if kernel[table] == nil {
				kernel[table] = map[string][]string{}
			}
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			kernel[table][name] = nil
		case strings.HasPrefix(l, "-A "):
			name, rule, _ := strings.Cut(l[3:], " ")
			if _, ok := kernel[table][name]; !ok {
				t.Fatalf("-A to %s, which does not exist", name)
			}
			kernel[table][name] = append(kernel[table][name], rule)
		case strings.HasPrefix(l, "-X "):
			name := l[3:]
			if len(kernel[table][name]) > 0 {
				t.Fatalf("-X %s, which is not empty", name)
			}
			delete(kernel[table], name)
		default:
			t.Fatalf("restore line %q", l)
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

// syncFake writes m into fake as the backend would: whole the first time
// (cache nil), then only what changed. It returns the cache to pass next.
func syncFake(t *testing.T, step int, fake *knftables.Fake, f nftFamily, m *Model, cache *nftCache) *nftCache {
	t.Helper()
	first := cache == nil
	ch, cache := f.desired(m, cache, !first)
	render := func(tx nftWriter) { f.transaction(tx, ch.before, ch.after, nil, nil) }
	if first {
		whole := f.whole(cache)
		render = func(tx nftWriter) { f.transaction(tx, nil, whole, nil, nil) }
	}
	tx := fake.NewTransaction()
	render(tx)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("step %d: the sync fails: %v", step, err)
	}
	// What goes to the kernel goes over netlink: every operation encodes.
	w := newWireBatch(f)
	render(w)
	if err := w.finish(); err != nil {
		t.Fatalf("step %d: the transaction does not encode: %v", step, err)
	}
	return cache
}

// TestEncode: an element in the kernel's bytes; a bad one is refused by
// name before anything is sent.
func TestEncode(t *testing.T) {
	key := binary.NativeEndian.AppendUint32(nil, 7)
	for _, tc := range []struct {
		fam      int
		e        nftElement
		key, val []byte
	}{
		{4, nftElement{set: "endpoints-0a", key: "7", value: "10.1.2.3 . 8080"}, key, []byte{10, 1, 2, 3, 0x1f, 0x90, 0, 0}},
		{6, nftElement{set: "endpoints-0a", key: "7", value: "fd00::1 . 53"}, key,
			append(netip.MustParseAddr("fd00::1").AsSlice(), 0, 53, 0, 0)},
		{4, nftElement{set: setHairpin, key: "10.1.2.3 . 10.1.2.3"}, []byte{10, 1, 2, 3, 10, 1, 2, 3}, nil},
		{4, nftElement{set: mapServiceIPs, key: "10.1.2.3 . udp . 53"}, []byte{10, 1, 2, 3, 17, 0, 0, 0, 0, 53, 0, 0}, nil},
		{6, nftElement{set: mapNodePorts, key: "sctp . 30000"}, []byte{132, 0, 0, 0, 0x75, 0x30, 0, 0}, nil},
	} {
		w := newWireBatch(newNFTFamily(tc.fam, opts))
		spec, err := w.spec(tc.e.set)
		if err != nil {
			t.Fatal(err)
		}
		gotKey, err := spec.key(tc.e.key)
		var gotVal []byte
		if err == nil && tc.e.value != "" {
			gotVal, err = spec.data(tc.e.value)
		}
		if err != nil || !bytes.Equal(gotKey, tc.key) || !bytes.Equal(gotVal, tc.val) {
			t.Errorf("%+v: key %v val %v (%v), want %v %v", tc.e, gotKey, gotVal, err, tc.key, tc.val)
		}
	}
	for _, e := range []nftElement{
		{set: "endpoints-0a", key: "x", value: "10.1.2.3 . 80"},
		{set: "endpoints-0a", key: "1", value: "fd00::1 . 80"}, // IPv6 in an IPv4 table
		{set: "endpoints-0a", key: "1", value: "10.1.2.3 . 70000"},
		{set: setHairpin, key: "10.1.2.3 . garbage"},
		{set: "no-such-set", key: "10.1.2.3"},
		{set: mapServiceIPs, key: "10.1.2.3 . tcp . 80", value: "goto"},
	} {
		w := newWireBatch(newNFTFamily(4, opts))
		err := w.element("add", e.set, e.key, e.value)
		if err == nil || !strings.Contains(err.Error(), e.set) {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

// TestMemoSlices: a Service's EndpointSlices replaced, added and removed
// between builds give, through the memo, what a build from nothing gives;
// and a build where nothing changed keeps every port as it was.
func TestMemoSlices(t *testing.T) {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.11", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	slice := func(svc, name string, addrs ...string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
		}
		return es
	}
	a, b := slice("web", "web-a", "10.64.1.1"), slice("web", "web-b", "10.64.2.1", "10.64.2.2")
	c := slice("api", "api-a", "10.64.3.1")
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}
	cfg := Config{NodeName: "node1", Families: []int{4}}
	endpoints := func(m Model) map[string][]string {
		out := map[string][]string{}
		for _, sp := range m.Ports {
			for _, e := range sp.Endpoints {
				out[sp.ID()] = append(out[sp.ID()], e.AddrPort().String())
			}
			slices.Sort(out[sp.ID()])
		}
		return out
	}
	var memo Memo
	var last Model
	for i, es := range [][]*discoveryv1.EndpointSlice{
		{b, c, a}, // two slices, listed out of order
		{c, slice("web", "web-a", "10.64.1.9"), b}, // one replaced
		{c, b},        // one gone
		{a, c, b},     // back
		{a, c, b},     // nothing changed
		{c},           // none left for web
		{c, a, b, b2}, // a third slice
	} {
		st := &cluster.State{Nodes: []corev1.Node{node}, Services: []*corev1.Service{svc, other}, EndpointSlices: es}
		got := memo.Build(st, cfg)
		want := Build(st, cfg)
		if w, g := endpoints(want), endpoints(got); !reflect.DeepEqual(w, g) {
			t.Errorf("step %d: endpoints through the memo %v, from nothing %v", i, g, w)
		}
		if i == 4 {
			for j := range got.Ports {
				if got.Ports[j] != last.Ports[j] {
					t.Errorf("step %d: port %s built again with nothing changed", i, got.Ports[j].ID())
				}
			}
		}
		last = got
	}
}

var b2 = func() *discoveryv1.EndpointSlice {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-c", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.64.4.1"}}}}
}()
