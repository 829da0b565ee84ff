package ipam

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/conf"
)

func diskPool(t *testing.T) (*Pool, *Disk) {
	t.Helper()
	n, err := conf.Load([]byte(`{"cniVersion":"1.0.0","name":"t","ranges":[{"subnet":"10.0.0.0/24"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDisk(filepath.Join(t.TempDir(), "t"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return New(n, d), d
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := readNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// An index entry left pointing at an address that now belongs to another
// attachment must not make the first one believe it holds it.
func TestDiskStaleIndexEntry(t *testing.T) {
	p, d := diskPool(t)
	a, b := Key{"a", "eth0"}, Key{"b", "eth0"}
	l, err := p.Allocate(b, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ip := l.Records[0].IP
	if err := os.Link(d.path(ip), d.indexPath(a, ip)); err != nil {
		t.Fatal(err)
	}
	recs, err := p.Lookup(a)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Lookup(a) = %v, %v; want nothing", recs, err)
	}
	la, err := p.Allocate(a, "y", nil)
	if err != nil {
		t.Fatal(err)
	}
	la.Close()
	if la.Records[0].IP == ip {
		t.Fatalf("a was handed b's %s", ip)
	}
	if _, err := p.Collect(map[Key]bool{a: true, b: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.indexPath(a, ip)); !os.IsNotExist(err) {
		t.Errorf("GC kept the stale index entry (stat: %v)", err)
	}
}

// A call killed between the record's two links leaves a record without an
// index entry: DEL cannot find it, GC releases it.
func TestDiskRecordWithoutIndex(t *testing.T) {
	p, d := diskPool(t)
	k := Key{"a", "eth0"}
	l, err := p.Allocate(k, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ip := l.Records[0].IP
	if err := os.Remove(d.indexPath(k, ip)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Release(k); err != nil {
		t.Fatal(err)
	}
	if err := p.Available(); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Collect(map[Key]bool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Released) != 1 || rep.Released[0].IP != ip {
		t.Fatalf("GC released %v, want %s", rep.Released, ip)
	}
}

// GC removes the temporary files of calls killed mid-write.
func TestDiskTidy(t *testing.T) {
	p, d := diskPool(t)
	k := Key{"a", "eth0"}
	l, err := p.Allocate(k, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := os.WriteFile(filepath.Join(d.dir, tmpPrefix+"killed"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Collect(map[Key]bool{k: true}, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.2", "k." + keyHash(k) + ".10.0.0.2", "lock"}
	if diff := cmp.Diff(want, dirNames(t, d.dir)); diff != "" {
		t.Errorf("data dir after GC (-want +got):\n%s", diff)
	}
}

// The next-fit position survives in the lock file across stores, and a
// garbled one only restarts next-fit.
func TestDiskNextFitHint(t *testing.T) {
	p, d := diskPool(t)
	for _, id := range []string{"a", "b"} {
		l, err := p.Allocate(Key{id, "eth0"}, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	p.Release(Key{"a", "eth0"})
	data, err := os.ReadFile(filepath.Join(d.dir, lockFile))
	if err != nil || string(data) != "ipv4 10.0.0.3\n" {
		t.Fatalf("lock file holds %q (%v), want the IPv4 position", data, err)
	}
	d2, err := OpenDisk(d.dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	p2 := New(p.net, d2)
	l, err := p2.Allocate(Key{"c", "eth0"}, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := l.Records[0].IP.String(); got != "10.0.0.4" {
		t.Fatalf("got %s, want 10.0.0.4 (next-fit after 10.0.0.3)", got)
	}
	if err := os.WriteFile(filepath.Join(d.dir, lockFile), []byte("ipv4 garb\x00age"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = p2.Allocate(Key{"d", "eth0"}, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := l.Records[0].IP.String(); got != "10.0.0.2" {
		t.Fatalf("got %s, want 10.0.0.2 (next-fit restarted)", got)
	}
}
