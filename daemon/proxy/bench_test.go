package proxy

import (
	"testing"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services, as the controller runs it: the memoized model, each
// nftables rules from their cached chunks, and the diff (the iptables
// backend has its own).
func BenchmarkPartialSync(b *testing.B) {
	st := clustertest.Big(10000, 10)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	prev := memo.Build(st, cfg)
	nf := newNFTRenderer(4, opts)
	_, nc := nf.desired(&prev, nil, false)
	change := func(i int) { clustertest.MoveEndpoint(st, i) }
	i := 0
	b.Run("model", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			memo.Build(st, cfg)
		}
	})
	b.Run("nftables", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			m := memo.Build(st, cfg)
			var ch nftChange
			ch, nc = nf.desired(&m, nc, true)
			nf.transaction(newFakeTx(4), ch.before, ch.after, nil, nil)
		}
	})
}
