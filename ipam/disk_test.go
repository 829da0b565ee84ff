package ipam_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/ipam"
)

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
