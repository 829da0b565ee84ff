package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDirWatch: what the kernel reports for the ways a cluster file gets
// written, and how each event is taken.
func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	w, err := watchDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const file = "cluster.yaml"
	// until collects events up to the first that stop says ends the step.
	until := func(step string, stop func(dirEvent) bool) []dirEvent {
		t.Helper()
		var got []dirEvent
		for {
			select {
			case ev, ok := <-w.events:
				if !ok {
					t.Fatalf("%s: the watch ended", step)
				}
				got = append(got, ev)
				if stop(ev) {
					return got
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no ending event in %+v", step, got)
			}
		}
	}
	named := func(name string, mask uint32) func(dirEvent) bool {
		return func(ev dirEvent) bool { return ev.name == name && ev.mask&mask != 0 }
	}

	// Written in place: touched while written, complete once closed.
	if err := os.WriteFile(filepath.Join(dir, file), []byte("kind: List\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := until("write in place", named(file, unix.IN_CLOSE_WRITE))
	if len(got) < 2 || !got[0].touches(file) || got[0].complete(file) || !got[len(got)-1].complete(file) {
		t.Errorf("write in place: %+v", got)
	}

	// Written beside and renamed over it: nothing before the rename
	// touches the file; the rename completes it.
	if err := os.WriteFile(filepath.Join(dir, file+".tmp"), []byte("kind: List\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, file+".tmp"), filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
	got = until("rename", named(file, unix.IN_MOVED_TO))
	for _, ev := range got[:len(got)-1] {
		if ev.touches(file) || ev.complete(file) {
			t.Errorf("rename: %+v taken for the file's", ev)
		}
	}
	if !got[len(got)-1].complete(file) {
		t.Errorf("rename: %+v does not complete the file", got[len(got)-1])
	}

	// A neighbour written and closed is not the file.
	if err := os.WriteFile(filepath.Join(dir, "skeind.log"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ev := range until("neighbour", named("skeind.log", unix.IN_CLOSE_WRITE)) {
		if ev.touches(file) || ev.complete(file) {
			t.Errorf("neighbour: %+v taken for the file's", ev)
		}
	}

	// A link swapped by rename, as the kubelet updates a ConfigMap volume:
	// the file may have changed, but only reading it tells.
	if err := os.Symlink("elsewhere", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	got = until("link swap", named("..data", unix.IN_MOVED_TO))
	if ev := got[len(got)-1]; !ev.touches(file) || ev.complete(file) {
		t.Errorf("link swap: %+v", ev)
	}

	// The directory removed: the watch ends, and says so.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-w.events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the watch of a removed directory did not end")
		}
	}
}

// TestWaitForChange: a complete write is read at once, a write still
// going on once the file is quiet, and nothing else wakes the reader.
func TestWaitForChange(t *testing.T) {
	const file = "cluster.yaml"
	type result struct {
		ok  bool
		err error
	}
	start := func(ctx context.Context, events <-chan dirEvent, quiet time.Duration) <-chan result {
		out := make(chan result, 1)
		go func() {
			ok, err := waitForChange(ctx, nil, events, file, quiet)
			out <- result{ok, err}
		}()
		return out
	}
	returns := func(t *testing.T, res <-chan result, want result) {
		t.Helper()
		select {
		case got := <-res:
			if got != want {
				t.Errorf("returned %+v, want %+v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("still waiting")
		}
	}
	waits := func(t *testing.T, res <-chan result) {
		t.Helper()
		select {
		case got := <-res:
			t.Fatalf("returned %+v; it should still wait", got)
		case <-time.After(100 * time.Millisecond):
		}
	}
	ctx := t.Context()

	t.Run("rename into place is read at once", func(t *testing.T) {
		events := make(chan dirEvent, 8)
		res := start(ctx, events, time.Hour)
		events <- dirEvent{name: file + ".tmp", mask: unix.IN_CLOSE_WRITE}
		events <- dirEvent{name: file, mask: unix.IN_MOVED_TO}
		returns(t, res, result{ok: true})
	})
	t.Run("close after writing is read at once", func(t *testing.T) {
		events := make(chan dirEvent, 8)
		res := start(ctx, events, time.Hour)
		events <- dirEvent{name: file, mask: unix.IN_MODIFY}
		events <- dirEvent{name: file, mask: unix.IN_CLOSE_WRITE}
		returns(t, res, result{ok: true})
	})
	t.Run("a write still open waits for quiet", func(t *testing.T) {
		events := make(chan dirEvent, 8)
		first, cancel := context.WithCancel(ctx)
		res := start(first, events, time.Hour)
		events <- dirEvent{name: file, mask: unix.IN_MODIFY}
		waits(t, res)
		cancel()
		returns(t, res, result{ok: true, err: context.Canceled})
		res = start(ctx, events, 10*time.Millisecond)
		events <- dirEvent{name: file, mask: unix.IN_MODIFY}
		returns(t, res, result{ok: true})
	})
	t.Run("a busy neighbour does not hold a change back", func(t *testing.T) {
		events := make(chan dirEvent)
		res := start(ctx, events, 20*time.Millisecond)
		events <- dirEvent{name: file, mask: unix.IN_MODIFY}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case events <- dirEvent{name: "skeind.log", mask: unix.IN_MODIFY}:
					time.Sleep(time.Millisecond)
				case <-stop:
					return
				}
			}
		}()
		returns(t, res, result{ok: true})
	})
	t.Run("other names alone do not wake it", func(t *testing.T) {
		events := make(chan dirEvent, 8)
		res := start(ctx, events, time.Millisecond)
		events <- dirEvent{name: "skeind.log", mask: unix.IN_MODIFY}
		events <- dirEvent{name: file + ".tmp", mask: unix.IN_CLOSE_WRITE}
		events <- dirEvent{name: file + ".tmp", mask: unix.IN_MOVED_FROM}
		waits(t, res)
	})
	t.Run("a lost event is read at once", func(t *testing.T) {
		events := make(chan dirEvent, 8)
		res := start(ctx, events, time.Hour)
		events <- dirEvent{mask: unix.IN_Q_OVERFLOW}
		returns(t, res, result{ok: true})
	})
	t.Run("the watch ended", func(t *testing.T) {
		events := make(chan dirEvent)
		res := start(ctx, events, time.Hour)
		close(events)
		returns(t, res, result{ok: false})
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		res := start(cctx, make(chan dirEvent), time.Hour)
		cancel()
		returns(t, res, result{ok: true, err: context.Canceled})
	})
}
