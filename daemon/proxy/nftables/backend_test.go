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

// TestDrift: the outline a sync leaves reads back unchanged however often
// it is looked at and after partial syncs; each way something else
// changes the table is named, and the next full sync puts it back.
func TestDrift(t *testing.T) {
	ns := newScratchNS(t, "driftnft")
	var b *Backend
	ctx := context.Background()
	sync := func(m *proxy.Model, full bool) {
		t.Helper()
		ns.do(t, func() {
			if _, err := b.Sync(ctx, m, full); err != nil {
				t.Fatalf("sync (full %v): %v", full, err)
			}
		})
	}
	ns.do(t, func() {
		var err error
		if b, err = New(opts); err != nil {
			t.Fatal(err)
		}
	})
	if what := b.Drift(ctx); what == "" {
		t.Fatal("drift reads nothing before the first sync")
	}
	withWeb, withoutWeb := load(t, nil), load(t, func(s string) string {
		return strings.Replace(s, "name: web,", "name: web-gone,", 1)
	})
	sync(withWeb, true)
	for range 3 {
		if what := b.Drift(ctx); what != "" {
			t.Fatalf("nothing changed, yet: %s", what)
		}
	}
	sync(withoutWeb, false) // a Service's chains and elements go
	sync(withoutWeb, false) // nothing to write
	sync(withWeb, false)
	if what := b.Drift(ctx); what != "" {
		t.Fatalf("after partial syncs: %s", what)
	}
	for _, tc := range []struct {
		name, script, want string
	}{
		{"a fixed chain flushed", "flush chain ip skein services", "chain services of table ip skein holds 0 rules, not 2"},
		{"the table flushed", "flush table ip6 skein", "chain nat-prerouting of table ip6 skein holds 0 rules"},
		{"a chain added", "add chain ip skein intruder", "table ip skein holds"},
		{"the table deleted", "delete table ip6 skein", "table ip6 skein is gone"},
		{"the table made again", "delete table ip skein\nadd table ip skein", "table ip skein was made again"},
		{"the ruleset flushed", "flush ruleset", "table ip skein is gone"},
	} {
		ns.nft(t, tc.script+"\n", "-f", "-")
		if what := b.Drift(ctx); !strings.Contains(what, tc.want) {
			t.Errorf("%s: drift reads %q, want %q", tc.name, what, tc.want)
		}
		sync(withWeb, true)
		if what := b.Drift(ctx); what != "" {
			t.Errorf("%s, then a full sync: %s", tc.name, what)
		}
		out := ns.nft(t, "", "list", "table", "ip", "skein")
		if !strings.Contains(out, "vmap @service-ips") || strings.Contains(out, "intruder") {
			t.Errorf("%s, then a full sync: the table is\n%s", tc.name, out)
		}
	}
}
