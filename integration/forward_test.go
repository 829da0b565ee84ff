package integration

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/masq"
	"github.com/skein-net/skein/integration/harness"
)

// TestForwardJumpOrder: in iptables' FORWARD chain, the jump to the
// masquerade controller's SKEIN-FORWARD (which accepts pod traffic) ends
// up below the Service proxy's jump (which refuses connections to
// Services without endpoints), whichever of the two was there first.
func TestForwardJumpOrder(t *testing.T) {
	requireRoot(t)
	ns, err := harness.NewNetNS(uniq("fwd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	ctx := context.Background()
	m, err := masq.New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
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
		if err := ns.Do(func() error { return m.Sync(ctx, want) }); err != nil {
			t.Fatalf("%s: sync: %v", tc.name, err)
		}
		got := order()
		if !slices.Equal(got, []string{"SKEIN-SERVICES", masq.ForwardChain, "ACCEPT"}) {
			t.Errorf("%s: FORWARD jumps %v, want SKEIN-SERVICES, then %s, then the host's", tc.name, got, masq.ForwardChain)
		}
	}
}
