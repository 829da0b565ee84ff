package proxy

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services, as the controller runs it: the memoized model, each
// backend's desired rules from its cached chunks, and the diff.
func BenchmarkPartialSync(b *testing.B) {
	st := clustertest.Big(10000, 10)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	prev := memo.Build(st, cfg)
	nf, ip := newNFTRenderer(4, opts), newIPTRenderer(4, opts)
	_, nc := nf.desired(&prev, nil, false)
	_, ic := ip.desired(&prev, nil, false)
	// change replaces one slice by an edited copy, as a source does.
	change := func(i int) {
		es := *st.EndpointSlices[0]
		es.Endpoints = append([]discoveryv1.Endpoint(nil), es.Endpoints...)
		es.Endpoints[0].Addresses = []string{fmt.Sprintf("10.99.%d.%d", i/256%256, i%256)}
		st.EndpointSlices[0] = &es
	}
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
	b.Run("iptables", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			m := memo.Build(st, cfg)
			var ch iptChange
			ch, ic = ip.desired(&m, ic, true)
			restoreText(ch.before, ch.after, nil)
		}
	})
}
