package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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

func TestDiskCorruptRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	p := ipam.New(network(t, `[{"subnet":"10.0.0.0/29"}]`, ``), openDisk(t, dir))
	if err := os.WriteFile(filepath.Join(dir, "10.0.0.2"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The corrupt record's address is taken; everyone else is served.
	if got := alloc(t, p, key(0))[0]; got != "10.0.0.3" {
		t.Fatalf("got %s, want 10.0.0.3 (10.0.0.2 is held by an unreadable record)", got)
	}
	rep, err := p.Collect(map[ipam.Key]bool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Corrupt) != 1 || rep.Corrupt[0].IP.String() != "10.0.0.2" {
		t.Fatalf("corrupt = %v", rep.Corrupt)
	}
	// Written before the node booted: its pod cannot be alive.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "10.0.0.2"), old, old); err != nil {
		t.Fatal(err)
	}
	rep, err = p.WithBootTime(time.Now().Add(-time.Minute)).Collect(map[ipam.Key]bool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Corrupt) != 0 || len(rep.Released) != 1 || rep.Released[0].IP.String() != "10.0.0.2" {
		t.Fatalf("after boot: released %v, kept corrupt %v; want 10.0.0.2 released", rep.Released, rep.Corrupt)
	}
}

func TestDiskPermissionsAndLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "net")
	p := ipam.New(network(t, `[{"subnet":"10.0.0.0/24"}]`, ``), openDisk(t, dir))
	alloc(t, p, key(0))
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "10.0.0.2"): 0o600, filepath.Join(dir, "lock"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestDiskConcurrent allocates from many stores on one directory at once,
// as concurrent plugin processes do.
func TestDiskConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	n := network(t, `[{"subnet":"10.0.0.0/24"}]`, ``)
	var wg sync.WaitGroup
	got := make([]string, 100)
	errs := make([]error, 100)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := ipam.New(n, openDisk(t, dir)).Allocate(key(i), "x", nil)
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = l.Records[0].IP.String()
			l.Close()
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, ip := range got {
		if errs[i] != nil {
			t.Fatalf("allocate %d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Fatalf("%s handed to %d and %d", ip, j, i)
		}
		seen[ip] = i
	}
}

func TestDiskLockTimeout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	holder := openDisk(t, dir)
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()
	waiter, err := ipam.OpenDisk(dir, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	if err := waiter.Lock(); !errors.Is(err, ipam.ErrLockTimeout) {
		t.Fatalf("err = %v, want ErrLockTimeout", err)
	}
}

// TestDiskNamesThatAreNotFiles: a directory, a FIFO or a symbolic link
// named like an address is not a record. GC reports it, never blocks on
// it (a FIFO's open waits for a writer, with the store lock held), never
// removes it, and every other record is collected as usual.
func TestDiskNamesThatAreNotFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	p := ipam.New(network(t, `[{"subnet":"10.0.0.0/28"}]`, ``), openDisk(t, dir))
	alloc(t, p, key(0)) // 10.0.0.2
	odd := map[string]func(string) error{
		"10.0.0.3": func(path string) error { return os.Mkdir(path, 0o700) },
		"10.0.0.4": func(path string) error { return syscall.Mkfifo(path, 0o600) },
		"10.0.0.5": func(path string) error { return os.Symlink("/dev/zero", path) },
	}
	for name, mk := range odd {
		if err := mk(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var rep ipam.GCReport
	var err error
	go func() {
		defer close(done)
		rep, err = p.Collect(map[ipam.Key]bool{}, nil)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("GC blocked on a name that is not a regular file")
	}
	if err != nil {
		t.Fatalf("GC failed on names that are not records: %v", err)
	}
	var notFile []string
	for _, r := range rep.NotFile {
		notFile = append(notFile, r.IP.String())
	}
	if diff := cmp.Diff([]string{"10.0.0.3", "10.0.0.4", "10.0.0.5"}, slices.Sorted(slices.Values(notFile))); diff != "" {
		t.Errorf("reported as not files (-want +got):\n%s", diff)
	}
	if len(rep.Released) != 1 || rep.Released[0].IP.String() != "10.0.0.2" {
		t.Errorf("released %v, want 10.0.0.2 only", rep.Released)
	}
	for name := range odd {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	// Their addresses stay taken: the next pods get others.
	for i := range 4 {
		if got := alloc(t, p, key(10+i))[0]; odd[got] != nil {
			t.Errorf("pod %d got %s, which a name that is not a record holds", i, got)
		}
	}
}
