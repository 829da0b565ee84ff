// Package nstest gives a test a network namespace of its own, for a
// kernel to program without touching the host's.
package nstest

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// NeedRoot skips a test that needs root without it, and fails it instead
// when CI=true: a skipped test proves nothing.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces)")
		}
		t.Skip("needs root (network namespaces)")
	}
}

// NS is a named network namespace, deleted when the test ends.
type NS struct {
	Name string
	h    netns.NsHandle
}

// New makes the namespace "skt-"+suffix (a leftover of that name from
// an interrupted run is deleted first).
func New(t testing.TB, suffix string) *NS {
	t.Helper()
	NeedRoot(t)
	name := "skt-" + suffix
	_ = netns.DeleteNamed(name)
	var h netns.NsHandle
	var err error
	onThread(t, func() { h, err = netns.NewNamed(name) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		_ = netns.DeleteNamed(name)
	})
	return &NS{Name: name, h: h}
}

// Do runs fn inside the namespace: what it opens, and the commands it
// starts, are the namespace's.
func (s *NS) Do(t testing.TB, fn func()) {
	t.Helper()
	onThread(t, func() {
		if err := netns.Set(s.h); err != nil {
			t.Fatal(err)
		}
		fn()
	})
}

// onThread runs fn on the calling goroutine's thread, locked, and puts
// the thread back in its own namespace afterwards (fn may move it).
func onThread(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = orig.Close() }() // a handle of our own thread: nothing to do if it will not close
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatal(err)
		}
	}()
	fn()
}
