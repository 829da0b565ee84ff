package overlay

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/skein-net/skein/daemon/cluster"
)

func clusterJSON(n int) []byte {
	items := make([]any, 0, n)
	for i := 1; i <= n; i++ {
		items = append(items, map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": fmt.Sprintf("node%d", i)},
			"spec":     map[string]any{"podCIDRs": []string{fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)}},
			"status":   map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": fmt.Sprintf("172.31.%d.%d", i/256, i%256)}}},
		})
	}
	b, _ := json.Marshal(map[string]any{"kind": "List", "items": items})
	return b
}

// BenchmarkPlan is the pure part of one sync of node1 in a cluster of
// 1,000 nodes: parse the file, pick the peers, diff with a converged
// kernel state.
func BenchmarkPlan(b *testing.B) {
	data := clusterJSON(1000)
	me := Self{Name: "node1", Underlay: netip.MustParseAddr("172.31.0.1"), PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.64.1.0/24")}}
	st, _ := cluster.ParseFile(data)
	peers, _ := Peers(st, me)
	have := Want(peers)
	b.Run("parse", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := cluster.ParseFile(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peers", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Peers(st, me)
		}
	})
	b.Run("diff", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Diff(Want(peers), have)
		}
	})
}
