package cluster_test

import (
	"bytes"
	"testing"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

func BenchmarkParse(b *testing.B) {
	data, err := clustertest.ListJSON(clustertest.Big(10000, 10))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := cluster.ParseFile(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReparse is the file source's cost for a file of 10,000
// Services of which one changed since the last read.
func BenchmarkReparse(b *testing.B) {
	data, err := clustertest.ListJSON(clustertest.Big(10000, 10))
	if err != nil {
		b.Fatal(err)
	}
	// The other version: one endpoint of a Service in the middle moved.
	other := bytes.Replace(data, []byte(`"10.100.19.136"`), []byte(`"10.99.0.1"`), 1)
	if bytes.Equal(other, data) {
		b.Fatal("no endpoint to change")
	}
	var p cluster.Parser
	if _, err := p.Parse(data); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		next := data
		if i%2 == 1 {
			next = other
		}
		if _, err := p.Parse(next); err != nil {
			b.Fatal(err)
		}
	}
}
