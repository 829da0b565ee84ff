package proxy

import (
	"context"
	"strings"
	"testing"
)

// TestFullSyncAddsNewChains: a periodic full sync after a good one, in
// which a Service (so a chain) comes back, must add the chain rather
// than flush one the kernel does not have.
func TestFullSyncAddsNewChains(t *testing.T) {
	newScratchNS(t, "fullnew").do(t, func() {
		b, err := NewNFTables(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		withWeb, withoutWeb := load(t, nil), load(t, func(s string) string {
			return strings.Replace(s, "name: web,", "name: web-gone,", 1)
		})
		for i, step := range []struct {
			m    *Model
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
// other by both backends, and so are the Services beside it.
func TestHostileNames(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			newScratchNS(t, "names"+backend[:3]).do(t, func() {
				var b Backend
				var err error
				if backend == "nftables" {
					b, err = NewNFTables(opts)
				} else {
					b, err = NewIPTables(opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				long := strings.Repeat("x", 250)
				m := load(t, func(s string) string {
					s = strings.Replace(s, "name: web,", "name: a b,", 1)
					s = strings.ReplaceAll(s, "kubernetes.io/service-name: web}", "kubernetes.io/service-name: a b}")
					return strings.Replace(s, "name: api,", "name: "+long+",", 1)
				})
				names := map[string]bool{}
				for _, sp := range m.Ports {
					names[sp.Service] = true
				}
				if !names["a b"] || !names[long] {
					t.Fatalf("the model lacks the hostile Services: %v", names)
				}
				ctx := context.Background()
				for _, full := range []bool{true, false, true} {
					if _, err := b.Sync(ctx, m, full); err != nil {
						t.Fatalf("sync (full %v): %v", full, err)
					}
				}
			})
		})
	}
}
