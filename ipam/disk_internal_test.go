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
	want := []string{"10.0.0.2", "k." + keyHash(k) + ".10.0.0.2", "last_reserved_ipv4", "lock"}
	if diff := cmp.Diff(want, dirNames(t, d.dir)); diff != "" {
		t.Errorf("data dir after GC (-want +got):\n%s", diff)
	}
}
