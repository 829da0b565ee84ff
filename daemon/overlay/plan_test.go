package overlay

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/internal/golden"
)

func load(t *testing.T, name string) *cluster.State {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	st, err := cluster.ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var self = Self{
	Name:     "node1",
	Underlay: netip.MustParseAddr("172.30.0.11"),
	PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
	HostNets: []netip.Prefix{netip.MustParsePrefix("172.30.0.0/24")},
}

func TestPeersSkipHostileNodes(t *testing.T) {
	peers, skipped := Peers(load(t, "hostile.yaml"), self)
	var names []string
	for _, p := range peers {
		names = append(names, p.Node+" "+p.Underlay.String()+" "+p.MAC.String())
	}
	want := []string{
		"node2 172.30.0.12 " + VTEPMAC(netip.MustParseAddr("172.30.0.12")).String(),
		"node3 172.30.0.13 0e:00:00:00:00:03",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, s := range skipped {
		got[s.Node] = s.Reason
	}
	wantSkipped := map[string]string{
		"copycat":         ReasonOverlappingPodCIDR,
		"garbage-cidr":    ReasonInvalidPodCIDR,
		"swallows-host":   ReasonCoversHostNetwork,
		"loopback":        ReasonBadUnderlay,
		"impostor":        ReasonBadUnderlay,
		"no-address":      ReasonNoUnderlay,
		"garbage-address": ReasonNoUnderlay,
	}
	if diff := cmp.Diff(wantSkipped, got); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

func TestVTEPMAC(t *testing.T) {
	a := VTEPMAC(netip.MustParseAddr("172.30.0.12"))
	if a.String() != VTEPMAC(netip.MustParseAddr("172.30.0.12")).String() {
		t.Fatal("not deterministic")
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Fatalf("%s is not a locally administered unicast MAC", a)
	}
	if a.String() == VTEPMAC(netip.MustParseAddr("172.30.0.13")).String() {
		t.Fatal("two underlays share a MAC")
	}
}

func TestPlanColdStart(t *testing.T) {
	peers, _ := Peers(load(t, "hostile.yaml"), self)
	golden.Check(t, "cold-start.plan", Render(Diff(Want(peers), Entries{})))
}

// TestPlanChange: node3 is gone, node2 moved to another underlay
// address, and an entry skein no longer wants is on the device.
func TestPlanChange(t *testing.T) {
	before, _ := Peers(load(t, "hostile.yaml"), self)
	have := Want(before)
	stale := netip.MustParseAddr("10.244.99.0")
	have.Neighs = append(have.Neighs, Neigh{IP: stale, MAC: net.HardwareAddr{0x0e, 0, 0, 0, 0, 0x99}})
	st := load(t, "hostile.yaml")
	var kept []int
	for i, n := range st.Nodes {
		if n.Name == "node3" {
			continue
		}
		kept = append(kept, i)
	}
	nodes := st.Nodes
	st.Nodes = nil
	for _, i := range kept {
		st.Nodes = append(st.Nodes, nodes[i])
	}
	n2, _ := st.Node("node2")
	n2.Status.Addresses[1].Address = "172.30.0.22"
	after, _ := Peers(st, self)
	golden.Check(t, "change.plan", Render(Diff(Want(after), have)))
}

func TestPlanIsIdempotent(t *testing.T) {
	peers, _ := Peers(load(t, "hostile.yaml"), self)
	if ops := Diff(Want(peers), Want(peers)); len(ops) != 0 {
		t.Fatalf("a converged state plans %d operations:\n%s", len(ops), Render(ops))
	}
}

func TestPlanOrder(t *testing.T) {
	p := Peer{Node: "n", Underlay: netip.MustParseAddr("172.30.0.50"), MAC: VTEPMAC(netip.MustParseAddr("172.30.0.50")),
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.50.0/24")}}
	var kinds []OpKind
	for _, o := range Diff(Want([]Peer{p}), Entries{}) {
		kinds = append(kinds, o.Kind)
	}
	if diff := cmp.Diff([]OpKind{NeighReplace, FDBReplace, RouteReplace}, kinds); diff != "" {
		t.Errorf("add order (-want +got):\n%s", diff)
	}
	kinds = nil
	for _, o := range Diff(Entries{}, Want([]Peer{p})) {
		kinds = append(kinds, o.Kind)
	}
	if diff := cmp.Diff([]OpKind{RouteDel, FDBDel, NeighDel}, kinds); diff != "" {
		t.Errorf("remove order (-want +got):\n%s", diff)
	}
}

// TestClaims checks the interval search against comparing with every
// claim, on prefixes of mixed sizes and families.
func TestClaims(t *testing.T) {
	var all []netip.Prefix
	c := &claims{}
	for _, s := range []string{"10.244.1.0/24", "10.244.3.0/24", "10.0.0.0/16", "fd00::/64", "10.244.8.0/21", "192.168.0.0/30"} {
		p := netip.MustParsePrefix(s)
		c.add(p, s)
		all = append(all, p)
	}
	for _, s := range []string{"10.244.1.128/25", "10.244.2.0/24", "10.244.0.0/16", "10.0.5.0/24", "0.0.0.0/0",
		"10.244.12.0/24", "10.244.16.0/24", "fd00::/16", "fd01::/64", "::/0", "192.168.0.4/30", "192.168.0.2/31"} {
		p := netip.MustParsePrefix(s)
		want := false
		for _, q := range all {
			want = want || q.Overlaps(p)
		}
		if _, _, got := c.overlapping(p); got != want {
			t.Errorf("overlapping(%s) = %v, want %v", p, got, want)
		}
	}
}
