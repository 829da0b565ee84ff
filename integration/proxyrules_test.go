package integration

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/integration/harness"
)

// TestProxyRulesetsLoad writes the golden files' cluster (both families,
// TCP, UDP and SCTP, affinity, NodePorts, external addresses, Local
// policies) into a real kernel with each backend: a full sync, a partial
// one, another full one over it, then cleanup, which leaves nothing.
func TestProxyRulesetsLoad(t *testing.T) {
	requireRoot(t)
	data, err := os.ReadFile("../daemon/proxy/testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	models := []string{string(data), strings.Replace(string(data), "- {addresses: [10.244.2.7], nodeName: node2, conditions: {ready: true}}\n", "", 1)}
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns, err := harness.NewNetNS(uniq("rules"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ns.Delete() })
			opts := proxy.RuleOptions{Bridge: "cni0", NodePortAddresses: []string{"172.30.0.0/24", "fd00:30::/64"}}
			var b proxy.Backend
			if backend == "nftables" {
				b, err = proxy.NewNFTables(opts)
			} else {
				b, err = proxy.NewIPTables(opts)
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
			if err := ns.Do(func() error { return b.Cleanup(ctx) }); err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			if left := proxyRules(t, ns, backend); left != "" {
				t.Errorf("after cleanup, %s still holds:\n%s", backend, left)
			}
		})
	}
}
