package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/iptables"
	"github.com/skein-net/skein/daemon/proxy/nftables"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/integration/harness"
)

// TestProxyRulesetsLoad writes the golden files' cluster (both families,
// TCP, UDP and SCTP, affinity, NodePorts, external addresses, Local
// policies) into a real kernel with each backend: a full sync, a partial
// one, another full one over it, then cleanup, which leaves nothing.
func TestProxyRulesetsLoad(t *testing.T) {
	requireRoot(t)
	data := proxytest.ClusterYAML
	models := []string{data, strings.Replace(data, "- {addresses: [10.244.2.7], nodeName: node2, conditions: {ready: true}}\n", "", 1)}
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := scratchNS(t, "rules")
			opts := proxy.RuleOptions{Bridge: "cni0", NodePortAddresses: []string{"172.30.0.0/24", "fd00:30::/64"}}
			var b proxy.Backend
			var err error
			if backend == "nftables" {
				b, err = nftables.New(opts)
			} else {
				b, err = iptables.New(opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var memo proxy.Memo
			for i, full := range []bool{true, false, true} {
				st, err := cluster.ParseFile([]byte(models[i%2]))
				if err != nil {
					t.Fatal(err)
				}
				m := memo.Build(st, proxy.Config{NodeName: "node1", Families: []int{4, 6}})
				if err := ns.Do(func() error { _, err := b.Sync(ctx, &m, full); return err }); err != nil {
					t.Fatalf("sync %d (full %v): %v", i, full, err)
				}
			}
			if proxyRules(t, ns, backend) == "" {
				t.Fatalf("the node namespace holds no %s rules after the syncs", backend)
			}
			// shop/web goes, and the next sync is a full one: its rules go,
			// its chains (named by its ports' IDs) with them.
			st, err := cluster.ParseFile([]byte(models[0]))
			if err != nil {
				t.Fatal(err)
			}
			gone := []string{"shop/web"}
			before := memo.Build(st, proxy.Config{NodeName: "node1", Families: []int{4, 6}})
			for _, sp := range before.Ports {
				if sp.Namespace == "shop" && sp.Service == "web" {
					gone = append(gone, sp.ID())
				}
			}
			st.Services = slices.DeleteFunc(st.Services, func(s *corev1.Service) bool { return s.Namespace == "shop" && s.Name == "web" })
			st.EndpointSlices = slices.DeleteFunc(st.EndpointSlices, func(es *discoveryv1.EndpointSlice) bool {
				return es.Namespace == "shop" && es.Labels[discoveryv1.LabelServiceName] == "web"
			})
			m := memo.Build(st, proxy.Config{NodeName: "node1", Families: []int{4, 6}})
			if err := ns.Do(func() error { _, err := b.Sync(ctx, &m, true); return err }); err != nil {
				t.Fatalf("the full sync without shop/web: %v", err)
			}
			left := ruleset(t, ns, backend)
			for _, g := range gone {
				if strings.Contains(left, g) {
					t.Errorf("shop/web is gone, %s still holds %s:\n%s", backend, g, left)
				}
			}
			if err := ns.Do(func() error { return b.Cleanup(ctx) }); err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			if left := proxyRules(t, ns, backend); left != "" {
				t.Errorf("after cleanup, %s still holds:\n%s", backend, left)
			}
		})
	}
}

// TestNFTablesEndpointSwaps replaces endpoints, local and remote, IPv4 and
// IPv6, through partial syncs (which then change map and set elements
// only, over netlink), and checks after each that the kernel's tables
// hold exactly what a full sync of the same rules writes over them.
func TestNFTablesEndpointSwaps(t *testing.T) {
	requireRoot(t)
	ns := scratchNS(t, "swap")
	b, err := nftables.New(proxy.RuleOptions{Bridge: "cni0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var memo proxy.Memo
	list := func() string {
		var out []string
		for _, fam := range []string{"ip", "ip6"} {
			text, err := ns.Exec(ctx, "nft", "list", "table", fam, nftables.Table)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, elementTokens(text)...)
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	for step := range 6 {
		st, err := cluster.ParseFile([]byte(swapCluster(step)))
		if err != nil {
			t.Fatal(err)
		}
		m := memo.Build(st, proxy.Config{NodeName: "node1", Families: []int{4, 6}})
		if err := ns.Do(func() error { _, err := b.Sync(ctx, &m, step == 0); return err }); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		got := list()
		for _, want := range []string{fmt.Sprintf("10.64.1.%d . 8080", 10+step), fmt.Sprintf("10.64.2.%d . 8080", 10+step),
			fmt.Sprintf("fd00:64:1::%d . 8080", 10+step), fmt.Sprintf("10.64.1.%d . 10.64.1.%d", 10+step, 10+step)} {
			if !strings.Contains(got, want) {
				t.Fatalf("step %d: the kernel lacks %q:\n%s", step, want, got)
			}
		}
		if err := ns.Do(func() error { _, err := b.Sync(ctx, &m, true); return err }); err != nil {
			t.Fatalf("step %d, full: %v", step, err)
		}
		if full := list(); got != full {
			t.Fatalf("step %d: after the partial sync the tables hold\n%s\nafter a full one\n%s", step, got, full)
		}
	}
	// The Service goes, in a full sync: its chains and endpoints maps
	// go with it.
	st, err := cluster.ParseFile([]byte(strings.Split(swapCluster(0), "---")[0]))
	if err != nil {
		t.Fatal(err)
	}
	m := memo.Build(st, proxy.Config{NodeName: "node1", Families: []int{4, 6}})
	if err := ns.Do(func() error { _, err := b.Sync(ctx, &m, true); return err }); err != nil {
		t.Fatal(err)
	}
	if left := list(); strings.Contains(left, "svc-") || strings.Contains(left, "map endpoints-") {
		t.Errorf("the Service is gone, the tables still hold:\n%s", left)
	}
}

// swapCluster is a dual-stack node1 and one Service of three endpoints
// per family, one of them local; every step replaces each endpoint by
// another.
func swapCluster(step int) string {
	text := `apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.64.1.0/24, "fd00:64:1::/64"]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  ipFamilies: [IPv4, IPv6]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
`
	for _, fam := range []struct{ n, addr string }{{"4", "10.64.%d.%d"}, {"6", `"fd00:64:%d::%d"`}} {
		text += fmt.Sprintf(`---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-%s, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv%s
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
`, fam.n, fam.n)
		for node := 1; node <= 3; node++ {
			text += fmt.Sprintf("- {addresses: ["+fam.addr+"], nodeName: node%d}\n", node, 10+step, node)
		}
	}
	return text
}

// elementTokens splits an nft listing into its lines and set elements,
// whose order and wrapping nft does not keep.
func elementTokens(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "elements = {"))
		for _, tok := range strings.Split(strings.TrimSuffix(l, "}"), ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				out = append(out, tok)
			}
		}
	}
	return out
}

// ruleset is what the node namespace's kernel holds for backend: the
// nftables ruleset, or both iptables families' rules.
func ruleset(t *testing.T, ns *harness.NetNS, backend string) string {
	t.Helper()
	tools := []string{"iptables-save", "ip6tables-save"}
	if backend == "nftables" {
		tools = []string{"nft list ruleset"}
	}
	var out []string
	for _, tool := range tools {
		text, err := ns.Exec(ctx(t), "sh", "-c", tool)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, text)
	}
	return strings.Join(out, "\n")
}
