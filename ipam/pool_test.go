package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
	"github.com/skein-net/skein/ipam/ipamtest"
)

func network(t testing.TB, ranges string, extra string) *conf.Network {
	t.Helper()
	n, err := conf.Load([]byte(`{"cniVersion":"1.0.0","name":"test","ranges":` + ranges + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stores runs a test against the fake store and the disk store alike.
func stores(t *testing.T, fn func(t *testing.T, newStore func() ipam.Store)) {
	t.Run("fake", func(t *testing.T) {
		s := ipamtest.New()
		fn(t, func() ipam.Store { return s })
	})
	t.Run("disk", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "net")
		fn(t, func() ipam.Store { return openDisk(t, dir) })
	})
}

func openDisk(t testing.TB, dir string) *ipam.Disk {
	t.Helper()
	d, err := ipam.OpenDisk(dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func key(i int) ipam.Key { return ipam.Key{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"} }

func alloc(t *testing.T, p *ipam.Pool, k ipam.Key) []string {
	t.Helper()
	l, err := p.Allocate(k, "skein0", nil)
	if err != nil {
		t.Fatalf("allocate %v: %v", k, err)
	}
	defer l.Close()
	var out []string
	for _, r := range l.Records {
		out = append(out, r.IP.String())
	}
	return out
}

func TestNextFitAndWrap(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		// 10.0.0.0/29: .0 network, .1 gateway, .7 broadcast, .4 excluded.
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/29"}]`, `,"exclude":["10.0.0.4"]`), newStore())
		var got []string
		for i := 0; i < 4; i++ {
			got = append(got, alloc(t, p, key(i))...)
		}
		if diff := cmp.Diff([]string{"10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"}, got); diff != "" {
			t.Fatalf("first pass (-want +got):\n%s", diff)
		}
		if _, err := p.Allocate(key(9), "x", nil); !errors.Is(err, ipam.ErrExhausted) {
			t.Fatalf("full pool: err = %v, want ErrExhausted", err)
		}
		// Release .3 then .6; next-fit wraps to .3 first, not the last freed.
		for _, k := range []ipam.Key{key(1), key(3)} {
			if _, err := p.Release(k); err != nil {
				t.Fatal(err)
			}
		}
		got = append(alloc(t, p, key(10)), alloc(t, p, key(11))...)
		if diff := cmp.Diff([]string{"10.0.0.3", "10.0.0.6"}, got); diff != "" {
			t.Fatalf("after wrap (-want +got):\n%s", diff)
		}
	})
}

func TestReleasedNotReusedBeforeWrap(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"}]`, ``), newStore())
		first := alloc(t, p, key(0))[0]
		if _, err := p.Release(key(0)); err != nil {
			t.Fatal(err)
		}
		if again := alloc(t, p, key(1))[0]; again == first {
			t.Fatalf("released %s handed out again at once", first)
		}
	})
}

func TestSameKeySameAddress(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/120"}]`, ``), newStore())
		a := alloc(t, p, key(1))
		b := alloc(t, p, key(1))
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("repeat ADD (-first +second):\n%s", diff)
		}
		if len(a) != 2 || !strings.Contains(a[1], ":") {
			t.Fatalf("dual-stack lease = %v, want one IPv4 and one IPv6", a)
		}
	})
}

func TestMultipleRangesOfAFamily(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/30"},{"subnet":"10.0.1.0/30"}]`, ``), newStore())
		got := append(alloc(t, p, key(0)), alloc(t, p, key(1))...)
		if diff := cmp.Diff([]string{"10.0.0.2", "10.0.1.2"}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
}

func TestRequested(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24","rangeEnd":"10.0.0.100"}]`, `,"exclude":["10.0.0.50"]`), newStore())
		l, err := p.Allocate(key(0), "x", []netip.Addr{netip.MustParseAddr("10.0.0.42")})
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if got := l.Records[0].IP.String(); got != "10.0.0.42" {
			t.Fatalf("got %s, want the requested 10.0.0.42", got)
		}
		for _, tc := range []struct{ addr, msg string }{
			{"10.0.0.42", "already reserved for c0/eth0"},
			{"10.0.0.1", "gateway"},
			{"10.0.0.200", "outside the range"},
			{"10.0.0.50", "excluded"},
			{"10.9.0.1", "no configured subnet"},
		} {
			_, err := p.Allocate(key(1), "x", []netip.Addr{netip.MustParseAddr(tc.addr)})
			var ue *ipam.UnavailableError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("request %s: err = %v, want UnavailableError saying %q", tc.addr, err, tc.msg)
			}
		}
	})
}

func TestFailedFamilyRollsBackTheOther(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		// One usable IPv6 address; the second pod gets IPv4 but no IPv6.
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/126","rangeEnd":"fd00::2"}]`, ``), newStore())
		alloc(t, p, key(0))
		if _, err := p.Allocate(key(1), "x", nil); !errors.Is(err, ipam.ErrExhausted) {
			t.Fatalf("err = %v, want ErrExhausted", err)
		}
		recs, err := p.Lookup(key(1))
		if err != nil || len(recs) != 0 {
			t.Fatalf("failed ADD left %v (err %v)", recs, err)
		}
	})
}

func TestReleaseIdempotent(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"}]`, ``), newStore())
		alloc(t, p, key(0))
		for i := 0; i < 2; i++ {
			if _, err := p.Release(key(0)); err != nil {
				t.Fatalf("release %d: %v", i, err)
			}
		}
		if _, err := p.Release(key(7)); err != nil {
			t.Fatalf("release of an unknown key: %v", err)
		}
	})
}

func TestAvailable(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/30"}]`, ``), newStore())
		if err := p.Available(); err != nil {
			t.Fatalf("empty pool: %v", err)
		}
		alloc(t, p, key(0))
		if err := p.Available(); !errors.Is(err, ipam.ErrExhausted) {
			t.Fatalf("full pool: err = %v, want ErrExhausted", err)
		}
		p.Release(key(0))
		if err := p.Available(); err != nil {
			t.Fatalf("after release: %v", err)
		}
	})
}

func TestCollect(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() ipam.Store) {
		p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"}]`, ``), newStore())
		for i := 0; i < 4; i++ {
			alloc(t, p, key(i))
		}
		// key(3)'s ADD is still running: it holds its record.
		inflight, err := p.Allocate(key(3), "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		var kept, dropped map[string]bool
		rep, err := p.Collect(map[ipam.Key]bool{key(0): true}, func(keep, drop map[string]bool) error { kept, dropped = keep, drop; return nil })
		if err != nil {
			t.Fatal(err)
		}
		var released []string
		for _, r := range rep.Released {
			released = append(released, r.Key.ContainerID)
		}
		if diff := cmp.Diff([]string{"c1", "c2"}, slices.Sorted(slices.Values(released))); diff != "" {
			t.Errorf("released (-want +got):\n%s", diff)
		}
		if len(rep.Busy) != 1 || rep.Busy[0].Key != key(3) {
			t.Errorf("busy = %v, want c3", rep.Busy)
		}
		if !kept["skein0"] || !dropped["skein0"] {
			t.Errorf("sweep keep set %v and drop set %v: both should name skein0", kept, dropped)
		}
		inflight.Close()
		rep, err = p.Collect(map[ipam.Key]bool{key(0): true}, nil)
		if err != nil || len(rep.Released) != 1 || rep.Released[0].Key != key(3) {
			t.Errorf("after the ADD ended: released %v (err %v), want c3", rep.Released, err)
		}
	})
}

func TestStoreFailureLeavesNothing(t *testing.T) {
	s := ipamtest.New()
	p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"}]`, ``), s)
	s.FailReserve = errors.New("no space left on device")
	_, err := p.Allocate(key(0), "x", nil)
	var se *ipam.StoreError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a StoreError", err)
	}
	if err := p.Available(); err == nil {
		t.Fatal("Available() = nil on a store that cannot be written")
	}
	s.FailReserve = nil
	if recs, _ := p.Lookup(key(0)); len(recs) != 0 {
		t.Fatalf("failed reserve left %v", recs)
	}
}
