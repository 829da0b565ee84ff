package dns

import (
	"testing"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// BenchmarkZoneChange is the CPU side of one endpoint change at 10,000
// Services in the DNS zone: the source's new snapshot, sealed, and the
// zone built from the last.
func BenchmarkZoneChange(b *testing.B) {
	st := clustertest.BigSnapshot(10000, 10)
	memo := NewMemo("cluster.local", 5)
	memo.Build(st, 0)
	i := 0
	for b.Loop() {
		i++
		st = clustertest.MoveEndpoint(st, i)
		memo.Build(st, uint32(i))
	}
}
