package ipam_test

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/skein-net/skein/ipam"
	"github.com/skein-net/skein/ipam/ipamtest"
)

// FuzzAllocator drives random allocate/release sequences over a small
// dual-stack pool and checks after every step: no address held twice,
// never a network, gateway, broadcast or excluded address, a key keeps
// its address, and release is idempotent.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x81, 0x82, 4, 5, 0x81})
	f.Add([]byte{0, 0, 0, 0x80, 0x80, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		n := network(t, `[{"subnet":"10.0.0.0/28","rangeStart":"10.0.0.2"},{"subnet":"fd00::/124"}]`, `,"exclude":["10.0.0.8/30","fd00::5"]`)
		s := ipam.Store(ipamtest.New())
		if len(ops) > 0 && ops[0]&0x40 != 0 {
			d, err := ipam.OpenDisk(filepath.Join(t.TempDir(), "n"), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			s = d
		}
		p := ipam.New(n, s)
		held := map[ipam.Key][]netip.Addr{}
		for _, op := range ops {
			k := ipam.Key{ContainerID: "c" + string(rune('a'+op&0x0f)), IfName: "eth0"}
			if op&0x80 != 0 {
				if _, err := p.Release(k); err != nil {
					t.Fatal(err)
				}
				delete(held, k)
				continue
			}
			l, err := p.Allocate(k, "x", nil)
			if err != nil {
				continue // exhausted is allowed; the checks below still hold
			}
			l.Close()
			var got []netip.Addr
			for _, r := range l.Records {
				got = append(got, r.IP)
				if rg, ok := p.Range(r.IP); !ok || rg.Reserved(r.IP) || !rg.Contains(r.IP) {
					t.Fatalf("handed out %s", r.IP)
				}
				for _, ex := range n.Exclude {
					if ex.Contains(r.IP) {
						t.Fatalf("handed out excluded %s", r.IP)
					}
				}
			}
			if prev, ok := held[k]; ok && (len(prev) != len(got) || prev[0] != got[0]) {
				t.Fatalf("%v moved from %v to %v", k, prev, got)
			}
			held[k] = got
			owner := map[netip.Addr]ipam.Key{}
			for hk, ips := range held {
				for _, ip := range ips {
					if o, dup := owner[ip]; dup {
						t.Fatalf("%s held by %v and %v", ip, o, hk)
					}
					owner[ip] = hk
				}
			}
		}
	})
}
