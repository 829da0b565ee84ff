package ipam_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/skein-net/skein/ipam"
)

// BenchmarkAllocateRelease measures one allocation and release on the
// disk store while n other pods hold addresses, as a node's plugin does.
func BenchmarkAllocateRelease(b *testing.B) {
	for _, held := range []int{0, 100, 250} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			n := network(b, `[{"subnet":"10.0.0.0/23"}]`, ``)
			p := ipam.New(n, openDisk(b, filepath.Join(b.TempDir(), "net")))
			for i := 0; i < held; i++ {
				l, err := p.Allocate(ipam.Key{ContainerID: fmt.Sprintf("held%d", i), IfName: "eth0"}, "x", nil)
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
			}
			k := ipam.Key{ContainerID: "bench", IfName: "eth0"}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				l, err := p.Allocate(k, "x", nil)
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
				if _, err := p.Release(k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
