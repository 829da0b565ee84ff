package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/internal/golden"
)

var node1 = Config{NodeName: "node1", Families: []int{4, 6}}

func load(t *testing.T, edit func(string) string) *Model {
	t.Helper()
	m := Build(proxytest.State(t, edit), node1)
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

// removeEndpoint is the change of the partial-sync goldens: one endpoint
// of shop/web leaves its slice.
func removeEndpoint(s string) string {
	return strings.Replace(s, "- {addresses: [10.244.2.7], nodeName: node2, conditions: {ready: true}}\n", "", 1)
}

// TestRulesets renders the golden cluster for both families: full syncs,
// then the partial sync of one change (the iptables backend has the same
// test, from the same cluster).
func TestRulesets(t *testing.T) {
	m, changed := load(t, nil), load(t, removeEndpoint)
	for _, fam := range []int{4, 6} {
		golden.Check(t, "full"+string(rune('0'+fam))+".nft", nftText(fam, nil, m))
	}
	golden.Check(t, "partial4.nft", nftText(4, m, changed))
	// Nothing changed: nothing written.
	if got := nftText(4, m, m); got != "" {
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
	st, _ := cluster.ParseFile([]byte(proxytest.ClusterYAML))
	v4 := Build(st, Config{NodeName: "node1", Families: []int{4}})
	if !slices.ContainsFunc(v4.Problems, func(p Problem) bool { return p.Reason == "family-not-on-node" }) {
		t.Errorf("an IPv4-only node did not report the IPv6 clusterIP: %v", v4.Problems)
	}
	if slices.ContainsFunc(v4.Ports, func(sp *ServicePort) bool { return sp.Family == 6 }) {
		t.Errorf("an IPv4-only node has IPv6 rules")
	}
}

// FuzzBuild: any cluster file the parser accepts turns into a model and
// rules for both backends without a panic, and every port it keeps is
// well formed.
func FuzzBuild(f *testing.F) {
	f.Add([]byte(proxytest.ClusterYAML))
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
	churn := proxytest.NewChurn(3, 4, 30)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
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
