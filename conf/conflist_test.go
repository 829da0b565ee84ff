package conf

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderConflist(t *testing.T) {
	got, err := RenderConflist(ConflistOptions{
		Name: "skein", CNIVersion: "1.0.0", MTU: 1450,
		PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		DNS:           types.DNS{Nameservers: []string{"10.96.0.10"}, Options: []string{"ndots:5"}},
		ClusterDomain: "cluster.local", PortMap: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "conflist.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("conflist (-want +got):\n%s", diff)
	}
}

func TestRenderConflistRejects(t *testing.T) {
	if _, err := RenderConflist(ConflistOptions{Name: "skein", CNIVersion: "1.0.0", MTU: 1450}); err == nil {
		t.Error("rendered a conflist without a pod CIDR")
	}
	if _, err := RenderConflist(ConflistOptions{Name: "skein", CNIVersion: "1.0.0", MTU: 20,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}); err == nil {
		t.Error("rendered a conflist the plugin would reject (MTU 20)")
	}
}
