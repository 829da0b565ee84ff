package masq

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite golden files")

var want = Want{
	Masquerade: true,
	PodNets: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.1.0/24"),
		netip.MustParsePrefix("fd00:10:244:1::/64")},
	NodeIPs: []netip.Addr{netip.MustParseAddr("172.30.0.12"), netip.MustParseAddr("172.30.0.11")},
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(b), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestRules(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	golden(t, "nft.golden", Transaction(fake, want).String())
	golden(t, "iptables4.golden", string(IPTablesRestore(want, 4)))
	golden(t, "iptables6.golden", string(IPTablesRestore(want, 6)))
	off := want
	off.Masquerade = false
	golden(t, "nft-no-masquerade.golden", Transaction(fake, off).String())
}
