package integration

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/hooks"
	"github.com/skein-net/skein/daemon/masq"
	"github.com/skein-net/skein/integration/harness"
)

// masqNode is a scratch namespace and a masquerade controller to sync
// into it.
func masqNode(t *testing.T, role string) (*harness.NetNS, *masq.Controller) {
	t.Helper()
	requireRoot(t)
	m, err := masq.New(masq.Config{}, masq.Deps{Log: slog.New(slog.DiscardHandler), Hooks: &hooks.Owner{}})
	if err != nil {
		t.Fatal(err)
	}
	return scratchNS(t, role), m
}

// TestForwardJumpOrder: in iptables' FORWARD chain, the jump to the
// masquerade controller's SKEIN-FORWARD (which accepts pod traffic) ends
// up below the Service proxy's jump (which refuses connections to
// Services without endpoints), whichever of the two was there first.
func TestForwardJumpOrder(t *testing.T) {
	ns, m := masqNode(t, "fwd")
	ctx := context.Background()
	want := masq.Want{Masquerade: true, PodNets: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		NodeIPs: []netip.Addr{netip.MustParseAddr("172.30.0.11")}}
	order := func() []string {
		out, err := ns.Exec(ctx, "iptables", "-S", "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		var jumps []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "-A" {
				jumps = append(jumps, f[len(f)-1])
			}
		}
		return jumps
	}
	for _, tc := range []struct {
		name, setup string
	}{
		{"the proxy's jump first", "iptables -N SKEIN-SERVICES && iptables -I FORWARD 1 -m conntrack --ctstate NEW -j SKEIN-SERVICES && iptables -A FORWARD -j ACCEPT"},
		{"SKEIN-FORWARD above it", "iptables -I FORWARD 1 -j SKEIN-FORWARD"},
	} {
		if _, err := ns.Exec(ctx, "sh", "-c", tc.setup); err != nil {
			t.Fatal(err)
		}
		if err := ns.Do(func() error { return m.Apply(ctx, want) }); err != nil {
			t.Fatalf("%s: sync: %v", tc.name, err)
		}
		got := order()
		if !slices.Equal(got, []string{"SKEIN-SERVICES", masq.ForwardChain, "ACCEPT"}) {
			t.Errorf("%s: FORWARD jumps %v, want SKEIN-SERVICES, then %s, then the host's", tc.name, got, masq.ForwardChain)
		}
	}
}

// TestMasqRules: on a real kernel, the masquerade controller's rules as
// they land, over a table left by an earlier version (which kept an
// accepting forward chain of its own), and again on the next sync.
func TestMasqRules(t *testing.T) {
	ns, m := masqNode(t, "masq")
	ctx := context.Background()
	// What an earlier version left.
	if _, err := ns.Exec(ctx, "nft", "add table inet skein; add set inet skein pods4 { type ipv4_addr; flags interval; }; "+
		"add element inet skein pods4 { 10.244.1.0/24 }; "+
		"add chain inet skein forward { type filter hook forward priority 0; }; add rule inet skein forward ip saddr @pods4 accept"); err != nil {
		t.Fatal(err)
	}
	// A thousand nodes' pod CIDRs, handed out in turn from 10.248.0.0/14.
	want := masq.Want{Masquerade: true, NodeIPs: []netip.Addr{netip.MustParseAddr("172.30.0.11")}}
	for i := range 1000 {
		want.PodNets = append(want.PodNets, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(248 + i/256), byte(i % 256), 0}), 24))
	}
	for _, sync := range []string{"over the earlier table", "again"} {
		if err := ns.Do(func() error { return m.Apply(ctx, want) }); err != nil {
			t.Fatalf("%s: %v", sync, err)
		}
		table, err := ns.Exec(ctx, "nft", "list", "table", "inet", "skein")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(table, "chain forward") || !strings.Contains(table, "chain postrouting") || !strings.Contains(table, "10.251.231.0/24") {
			t.Errorf("%s: inet skein holds:\n%s", sync, table)
		}
		rules, err := ns.Exec(ctx, "iptables", "-S", masq.ForwardChain)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(rules, "-j ACCEPT"); n != 12 || !strings.Contains(rules, "-s 10.248.0.0/15") || !strings.Contains(rules, "-d 10.251.224.0/21") {
			t.Errorf("%s: %d accepting rules for 1,000 /24s, want 12:\n%s", sync, n, rules)
		}
	}
}
