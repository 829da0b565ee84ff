package proxy

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces)")
		}
		t.Skip("needs root (network namespaces)")
	}
}

// scratchNS is a network namespace of the test's own, for a kernel to
// write tables into; it is deleted when the test ends.
type scratchNS struct {
	name string
	h    netns.NsHandle
}

// onThread runs fn on the calling goroutine's thread, locked, and puts
// the thread back in its own namespace afterwards (fn may move it).
func onThread(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatal(err)
		}
	}()
	fn()
}

func newScratchNS(t *testing.T, suffix string) *scratchNS {
	t.Helper()
	needRoot(t)
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
	return &scratchNS{name: name, h: h}
}

// do runs fn inside the namespace: what it opens, and the commands it
// starts, are the namespace's.
func (s *scratchNS) do(t *testing.T, fn func()) {
	t.Helper()
	onThread(t, func() {
		if err := netns.Set(s.h); err != nil {
			t.Fatal(err)
		}
		fn()
	})
}

// socket opens a netfilter socket inside the namespace.
func (s *scratchNS) socket(t *testing.T) *nlSocket {
	t.Helper()
	var sock *nlSocket
	var err error
	s.do(t, func() { sock, err = openNL() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sock.close)
	return sock
}

// nft runs nft in the namespace.
func (s *scratchNS) nft(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.name, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
