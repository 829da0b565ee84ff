package iptables

import (
	"context"
	"testing"

	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/internal/nstest"
)

// TestHostileNames: a Service named with a space, or with a name of 250
// characters (a cluster file validates neither), is programmed like any
// other, and so are the Services beside it.
func TestHostileNames(t *testing.T) {
	ns := nstest.New(t, "namesipt")
	ns.Do(t, func() {
		b, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		m := load(t, proxytest.HostileNames)
		ctx := context.Background()
		for _, full := range []bool{true, false, true} {
			if _, err := b.Sync(ctx, m, full); err != nil {
				t.Fatalf("sync (full %v): %v", full, err)
			}
		}
	})
}
