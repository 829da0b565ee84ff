package nftables

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/nftwire"
	"github.com/skein-net/skein/internal/nstest"
)

// scratchNS is a network namespace of the test's own, for a kernel to
// write tables into; it is deleted when the test ends.
type scratchNS struct{ *nstest.NS }

func newScratchNS(t *testing.T, suffix string) *scratchNS {
	return &scratchNS{nstest.New(t, suffix)}
}

// do runs fn inside the namespace.
func (s *scratchNS) do(t *testing.T, fn func()) { s.Do(t, fn) }

// socket opens a netfilter socket inside the namespace.
func (s *scratchNS) socket(t *testing.T) *nftwire.Conn {
	t.Helper()
	var sock *nftwire.Conn
	var err error
	s.do(t, func() { sock, err = nftwire.Open() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sock.Close)
	return sock
}

// nft runs nft in the namespace.
func (s *scratchNS) nft(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.Name, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
