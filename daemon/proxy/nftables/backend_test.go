package nftables

import (
	"context"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
)

// TestFullSyncAddsNewChains: a periodic full sync after a good one, in
// which a Service (so a chain) comes back, must add the chain rather
// than flush one the kernel does not have.
func TestFullSyncAddsNewChains(t *testing.T) {
	newScratchNS(t, "fullnew").do(t, func() {
		b, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		withWeb, withoutWeb := load(t, nil), load(t, func(s string) string {
			return strings.Replace(s, "name: web,", "name: web-gone,", 1)
		})
		for i, step := range []struct {
			m    *proxy.Model
			full bool
		}{{withWeb, true}, {withoutWeb, true}, {withWeb, true}, {withoutWeb, false}, {withWeb, true}} {
			if _, err := b.Sync(ctx, step.m, step.full); err != nil {
				t.Fatalf("sync %d (full %v): %v", i, step.full, err)
			}
		}
	})
}

// TestHostileNames: a Service named with a space, or with a name of 250
// characters (a cluster file validates neither), is programmed like any
// other, and so are the Services beside it (the iptables backend has the
// same test).
func TestHostileNames(t *testing.T) {
	newScratchNS(t, "namesnft").do(t, func() {
		b, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		m := load(t, proxytest.HostileNames)
		names := map[string]bool{}
		for _, sp := range m.Ports {
			names[sp.Service] = true
		}
		if !names["a b"] || !names[proxytest.LongName] {
			t.Fatalf("the model lacks the hostile Services: %v", names)
		}
		ctx := context.Background()
		for _, full := range []bool{true, false, true} {
			if _, err := b.Sync(ctx, m, full); err != nil {
				t.Fatalf("sync (full %v): %v", full, err)
			}
		}
	})
}
