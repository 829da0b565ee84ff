package proxy

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/internal/golden"
)

var node1 = Config{NodeName: "node1", Families: []int{4, 6}}

func load(t *testing.T, edit func(string) string) *Model {
	t.Helper()
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	st, err := cluster.ParseFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	m := Build(st, node1)
	return &m
}

var opts = RuleOptions{Bridge: "cni0"}

func nftText(fam int, prev, cur *Model) string {
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

func iptText(fam int, prev, cur *Model) string {
	f := newIPTRenderer(fam, opts)
	if prev == nil {
		_, cache := f.desired(cur, nil, false)
		return string(restoreText(nil, f.whole(cache), nil))
	}
	_, cache := f.desired(prev, nil, false)
	ch, _ := f.desired(cur, cache, true)
	return string(restoreText(ch.before, ch.after, nil))
}

// removeEndpoint is the change of the partial-sync goldens: one endpoint
// of shop/web leaves its slice.
func removeEndpoint(s string) string {
	return strings.Replace(s, "- {addresses: [10.244.2.7], nodeName: node2, conditions: {ready: true}}\n", "", 1)
}

// TestRulesets renders the same cluster for both backends and both
// families: full syncs, then the partial sync of one change.
func TestRulesets(t *testing.T) {
	m, changed := load(t, nil), load(t, removeEndpoint)
	for _, fam := range []int{4, 6} {
		golden.Check(t, "full"+string(rune('0'+fam))+".nft", nftText(fam, nil, m))
		golden.Check(t, "full"+string(rune('0'+fam))+".iptables", iptText(fam, nil, m))
	}
	golden.Check(t, "partial4.nft", nftText(4, m, changed))
	golden.Check(t, "partial4.iptables", iptText(4, m, changed))
	// Nothing changed: nothing written.
	if got := nftText(4, m, m); got != "" {
		t.Errorf("an unchanged model writes:\n%s", got)
	}
	if got := iptText(4, m, m); got != "" {
		t.Errorf("an unchanged model writes:\n%s", got)
	}
}

// TestBuild: what a user's objects turn into, and what is left out.
func TestBuild(t *testing.T) {
	m := load(t, nil)
	byName := map[string]*ServicePort{}
	for _, sp := range m.Ports {
		byName[fmt.Sprintf("%s/v%d", sp.Name(), sp.Family)] = sp
	}
	for _, tc := range []struct {
		port string
		want []string // cluster endpoints
	}{
		// Two slices merge; the named target port differs per slice.
		{"shop/web:admin/v4", []string{"10.244.1.5:9001", "10.244.2.7:9002"}},
		// The terminating endpoint waits while ready ones exist.
		{"shop/web:http/v4", []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
		{"kube-system/dns:dns/v6", []string{"[fd00:10:244:2::9]:5353"}},
		{"shop/empty/v4", nil},
		// The endpoint with a garbage address is dropped, not the slice.
		{"shop/bad-port:b/v4", []string{"10.244.2.60:8081"}},
	} {
		sp, ok := byName[tc.port]
		if !ok {
			t.Errorf("no %s in %v", tc.port, slices.Collect(maps.Keys(byName)))
			continue
		}
		var got []string
		for _, e := range sp.ClusterEndpoints() {
			got = append(got, e.AddrPort().String())
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s endpoints (-want +got):\n%s", tc.port, diff)
		}
	}
	for _, absent := range []string{"shop/headless/v4", "shop/elsewhere/v4", "shop/bad-ip/v4", "shop/bad-port:a/v4"} {
		if _, ok := byName[absent]; ok {
			t.Errorf("%s has rules", absent)
		}
	}
	if sp := byName["kube-system/dns:dns/v4"]; sp.AffinitySeconds != 60 {
		t.Errorf("dns affinity %d s, want 60", sp.AffinitySeconds)
	}
	var reasons []string
	for _, p := range m.Problems {
		reasons = append(reasons, p.Object+" "+p.Reason)
	}
	want := []string{
		"Service shop/bad-ip invalid-cluster-ip",
		"Service shop/bad-port invalid-port",
		"EndpointSlice shop/bad-port-1 invalid-endpoint-address",
	}
	slices.Sort(reasons)
	slices.Sort(want)
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	// Only serving-and-terminating endpoints left: they drain.
	drain := load(t, func(s string) string {
		return strings.Replace(removeEndpoint(s), "{addresses: [10.244.1.5], nodeName: node1, conditions: {ready: true}}",
			"{addresses: [10.244.1.5], nodeName: node1, conditions: {ready: false}}", 1)
	})
	i := slices.IndexFunc(drain.Ports, func(sp *ServicePort) bool { return sp.Name() == "shop/web:http" && sp.Family == 4 })
	if i < 0 {
		t.Fatal("no shop/web:http port once its endpoints drain")
	}
	if got := drain.Ports[i].ClusterEndpoints(); len(got) != 1 || got[0].AddrPort().String() != "10.244.2.8:8080" {
		t.Errorf("with no ready endpoint, web uses %v, want the terminating 10.244.2.8:8080", got)
	}
	// Two ports of one name (unnamed here) would share their rules: the
	// second is left out and reported.
	twice, err := cluster.ParseFile([]byte(`{"kind": "List", "items": [
{"kind": "Node", "metadata": {"name": "node1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}},
{"kind": "Service", "metadata": {"name": "twice", "namespace": "shop"},
 "spec": {"clusterIP": "10.96.0.70", "ports": [{"port": 80}, {"port": 81}, {"port": 80, "protocol": "UDP"}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	tm := Build(twice, Config{NodeName: "node1", Families: []int{4}})
	if len(tm.Ports) != 2 || tm.Ports[0].Port == tm.Ports[1].Port && tm.Ports[0].Protocol == tm.Ports[1].Protocol ||
		len(tm.Problems) != 1 || tm.Problems[0].Reason != "invalid-port" {
		t.Errorf("a Service with two unnamed TCP ports: %d ports, problems %v", len(tm.Ports), tm.Problems)
	}
	// A node without IPv6 leaves IPv6 Services out and says so.
	st, _ := cluster.ParseFile([]byte(mustRead(t, "testdata/cluster.yaml")))
	v4 := Build(st, Config{NodeName: "node1", Families: []int{4}})
	if !slices.ContainsFunc(v4.Problems, func(p Problem) bool { return p.Reason == "family-not-on-node" }) {
		t.Errorf("an IPv4-only node did not report the IPv6 clusterIP: %v", v4.Problems)
	}
	if slices.ContainsFunc(v4.Ports, func(sp *ServicePort) bool { return sp.Family == 6 }) {
		t.Errorf("an IPv4-only node has IPv6 rules")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzBuild: any cluster file the parser accepts turns into a model and
// rules for both backends without a panic, and every port it keeps is
// well formed.
func FuzzBuild(f *testing.F) {
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"kind":"Service","metadata":{"name":"s"},"spec":{"clusterIPs":["::ffff:10.0.0.1","10.0.0.1"],"ports":[{"port":-1}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := cluster.ParseFile(data)
		if err != nil {
			return
		}
		m := Build(st, node1)
		for _, sp := range m.Ports {
			if !sp.ClusterIP.IsValid() || sp.Port == 0 || (sp.Family == 4) != sp.ClusterIP.Is4() {
				t.Fatalf("kept a malformed port %+v", sp)
			}
		}
		for _, fam := range []int{4, 6} {
			_ = nftText(fam, nil, &m)
			_ = iptText(fam, nil, &m)
		}
	})
}

func newFakeTx(fam int) *knftables.Transaction {
	kf := knftables.IPv4Family
	if fam == 6 {
		kf = knftables.IPv6Family
	}
	return knftables.NewFake(kf, Table).NewTransaction()
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
	f := newNFTRenderer(4, opts)
	partial := knftables.NewFake(knftables.IPv4Family, Table)
	var cache *nftCache
	fi := newIPTRenderer(4, opts)
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
