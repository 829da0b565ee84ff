package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
)

var node1 = Config{NodeName: "node1", Families: []int{4, 6}}

func load(t *testing.T, edit func(string) string) *Model {
	t.Helper()
	m := Build(proxytest.State(t, edit), node1)
	return &m
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
		"ServiceCIDR hostile invalid-service-cidr",
	}
	slices.Sort(reasons)
	slices.Sort(want)
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	// Only serving-and-terminating endpoints left: they drain.
	drain := load(t, func(s string) string {
		return strings.Replace(proxytest.RemoveEndpoint(s), "{addresses: [10.244.1.5], nodeName: node1, conditions: {ready: true}}",
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
	})
}
