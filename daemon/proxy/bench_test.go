package proxy

import (
	"testing"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services in the model: the source's new snapshot, sealed, and the
// memoized build (each backend has its own
// for its rules).
func BenchmarkPartialSync(b *testing.B) {
	st := clustertest.BigSnapshot(10000, 10)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	memo.Build(st, cfg) // the build before the change
	i := 0
	b.Run("model", func(b *testing.B) {
		for b.Loop() {
			i++
			st = clustertest.MoveEndpoint(st, i)
			memo.Build(st, cfg)
		}
	})
}
