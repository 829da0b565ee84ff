package masq

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/internal/golden"
)

var want = Want{
	Masquerade: true,
	PodNets: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.1.0/24"),
		netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
	NodeIPs: []netip.Addr{netip.MustParseAddr("172.30.0.12"), netip.MustParseAddr("172.30.0.11")},
}

func TestRules(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	golden.Check(t, "nft.golden", Transaction(fake, want).String())
	golden.Check(t, "iptables4.golden", string(IPTablesRestore(want, 4)))
	golden.Check(t, "iptables6.golden", string(IPTablesRestore(want, 6)))
	off := want
	off.Masquerade = false
	golden.Check(t, "nft-no-masquerade.golden", Transaction(fake, off).String())
}

// TestCovering: the forward chain accepts exactly the pod CIDRs' union,
// in as few prefixes as that takes.
func TestCovering(t *testing.T) {
	var thousand []string // node i's /24, as a cluster CIDR 10.248.0.0/14 hands them out
	for i := range 1000 {
		thousand = append(thousand, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(248 + i/256), byte(i % 256), 0}), 24).String())
	}
	for _, tc := range []struct {
		name   string
		nets   []string
		family int
		want   []string
	}{
		{"neighbours merge", []string{"10.244.3.0/24", "10.244.2.0/24"}, 4, []string{"10.244.2.0/23"}},
		{"never wider than the union", []string{"10.244.1.0/24", "10.244.2.0/24"}, 4, []string{"10.244.1.0/24", "10.244.2.0/24"}},
		{"a gap stays a gap", []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.3.0/24"}, 4, []string{"10.244.0.0/23", "10.244.3.0/24"}},
		{"inside another", []string{"10.244.0.0/16", "10.244.7.0/24"}, 4, []string{"10.244.0.0/16"}},
		{"host bits dropped", []string{"10.244.1.7/24"}, 4, []string{"10.244.1.0/24"}},
		{"one family", []string{"10.244.1.0/24", "fd00:10:244:1::/64", "fd00:10:244::/64"}, 6, []string{"fd00:10:244::/63"}},
		{"none", []string{"fd00:10:244:1::/64"}, 4, nil},
		{"a thousand nodes", thousand, 4, []string{"10.248.0.0/15", "10.250.0.0/16", "10.251.0.0/17", "10.251.128.0/18", "10.251.192.0/19", "10.251.224.0/21"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nets []netip.Prefix
			for _, n := range tc.nets {
				nets = append(nets, netip.MustParsePrefix(n))
			}
			var got []string
			for _, p := range covering(nets, tc.family) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
