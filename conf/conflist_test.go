package conf

import (
	"net/netip"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/internal/golden"
)

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
	golden.Check(t, "conflist.golden.json", string(got))
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
