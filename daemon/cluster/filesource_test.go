package cluster

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// errorLog counts a source's failed reads by reason.
type errorLog struct {
	mu      sync.Mutex
	reasons []string
}

func (l *errorLog) add(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reasons = append(l.reasons, reason)
}

func (l *errorLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reasons...)
}

// runFileSource starts a source on path with a short poll and returns its
// snapshots, its health and its failed reads.
func runFileSource(t *testing.T, path string) (<-chan *State, *Health, *errorLog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan *State, 16)
	errs := &errorLog{}
	h := &Health{OnError: errs.add}
	src := &FileSource{Path: path, Interval: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Health: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx, updates) }()
	t.Cleanup(func() { cancel(); <-done })
	return updates, h, errs
}

func nextSnapshot(t *testing.T, updates <-chan *State) *State {
	t.Helper()
	select {
	case st := <-updates:
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot")
		return nil
	}
}

// replace writes data beside path and renames it into place.
func replace(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestFileSourceRefusesWhatIsNotAFile: a FIFO at the path would block an
// open for good, a link to /dev/zero would be read forever, a sparse file
// over the limit would be read in full; each is refused without reading,
// reported with its reason, and the file that replaces it is read.
func TestFileSourceRefusesWhatIsNotAFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		make   func(path string) error
		reason string
	}{
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o600) }, ReasonNotRegular},
		{"link to /dev/zero", func(path string) error { return os.Symlink("/dev/zero", path) }, ReasonNotRegular},
		{"directory", func(path string) error { return os.Mkdir(path, 0o700) }, ReasonNotRegular},
		{"over the limit", func(path string) error {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(MaxFileSize + 1) // sparse: nothing to read but zeros
		}, ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cluster.yaml")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			updates, h, errs := runFileSource(t, path)
			deadline := time.Now().Add(5 * time.Second)
			for len(errs.get()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := errs.get(); len(got) == 0 || got[0] != tc.reason {
				t.Fatalf("failed reads %v, want %s", got, tc.reason)
			}
			if st := h.Status(); st.FailingSince.IsZero() || st.LastError == "" {
				t.Errorf("health %+v, want failing with an error", st)
			}
			// Not frozen: a good file renamed into place is read.
			if tc.name == "directory" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			replace(t, path, twoNodes)
			if st := nextSnapshot(t, updates); len(st.Nodes) != 2 {
				t.Fatalf("snapshot has %d nodes, want 2", len(st.Nodes))
			}
			deadline = time.Now().Add(5 * time.Second)
			for !h.Status().FailingSince.IsZero() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if st := h.Status(); !st.FailingSince.IsZero() || st.LastGood.IsZero() {
				t.Errorf("health after a good file %+v, want good", st)
			}
		})
	}
}

// TestFileSourceFailedFileNotReparsed: a file that does not parse is
// parsed once, not at every poll, until it changes.
func TestFileSourceFailedFileNotReparsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	replace(t, path, twoNodes)
	updates, _, errs := runFileSource(t, path)
	nextSnapshot(t, updates)
	replace(t, path, "kind: Node\nmetadata: [")
	time.Sleep(300 * time.Millisecond) // fifteen polls
	if diff := cmp.Diff([]string{ReasonParse}, errs.get()); diff != "" {
		t.Fatalf("failed reads of one broken file over fifteen polls (-want +got):\n%s", diff)
	}
	// Changed, still broken: parsed once more.
	replace(t, path, "kind: Node\nmetadata: [[")
	time.Sleep(300 * time.Millisecond)
	if diff := cmp.Diff([]string{ReasonParse, ReasonParse}, errs.get()); diff != "" {
		t.Fatalf("failed reads after the file changed (-want +got):\n%s", diff)
	}
	replace(t, path, "kind: Node\nmetadata: {name: only}\n")
	if st := nextSnapshot(t, updates); len(st.Nodes) != 1 {
		t.Fatalf("snapshot has %d nodes, want 1", len(st.Nodes))
	}
}
