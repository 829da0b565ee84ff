package cluster_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// TestFactsReserved: every node's addresses and pod CIDRs are reserved,
// merged; a pod CIDR that holds a node's address (0.0.0.0/0) reserves
// nothing.
func TestFactsReserved(t *testing.T) {
	st, err := cluster.ParseFile([]byte(clustertest.HostileNodes + `---
apiVersion: v1
kind: Node
metadata: {name: dual}
spec: {podCIDRs: [10.244.3.0/24, "fd00:10:244:3::/64"]}
---
apiVersion: v1
kind: Node
metadata: {name: broken}
spec: {podCIDRs: [10.244.9.1/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range st.Seal(nil).Facts().Reserved {
		got = append(got, p.String())
	}
	want := []string{"10.244.1.0/24", "10.244.2.0/23", "172.30.0.11/32", "172.30.0.12/31", "172.31.0.12/32", "198.51.100.12/32", "fd00:10:244:3::/64"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reserved (-want +got):\n%s", diff)
	}
	// What the masquerade rules take: the pod networks (greedy's 0.0.0.0/0
	// holds node addresses and is none) and every node address.
	var nets, ips []string
	for _, p := range st.Facts().PodNets {
		nets = append(nets, p.String())
	}
	for _, a := range st.Facts().NodeIPs {
		ips = append(ips, a.String())
	}
	if diff := cmp.Diff([]string{"10.244.1.0/24", "10.244.2.0/23", "fd00:10:244:3::/64"}, nets); diff != "" {
		t.Errorf("pod networks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"172.30.0.11", "172.30.0.12", "172.30.0.13", "172.31.0.12", "198.51.100.12"}, ips); diff != "" {
		t.Errorf("node addresses (-want +got):\n%s", diff)
	}
	if _, err := st.Facts().PodCIDRs("broken"); err == nil {
		t.Error("a podCIDR that is not a network parsed")
	}
	if cidrs, err := st.Facts().PodCIDRs("dual"); err != nil || len(cidrs) != 2 {
		t.Errorf("dual's pod CIDRs: %v %v", cidrs, err)
	}
}
