package masq

import (
	"net/netip"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/internal/golden"
)

var want = Want{
	Masquerade: true,
	PodNets: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.1.0/24"),
		netip.MustParsePrefix("fd00:10:244:1::/64")},
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
