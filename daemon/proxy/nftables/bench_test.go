package nftables

import (
	"testing"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
	"github.com/skein-net/skein/daemon/proxy"
)

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services in this backend: the model, the rules from the cached chunks,
// the diff and its transaction.
func BenchmarkPartialSync(b *testing.B) {
	st := clustertest.BigSnapshot(10000, 10)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	prev := memo.Build(st, cfg)
	nf := newNFTRenderer(4, opts)
	_, nc := nf.desired(&prev, nil, false)
	i := 0
	for b.Loop() {
		i++
		st = clustertest.MoveEndpoint(st, i)
		m := memo.Build(st, cfg)
		var ch nftChange
		ch, nc = nf.desired(&m, nc, true)
		nf.transaction(newFakeTx(4), ch.before, ch.after, nil, nil)
	}
}
