package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFactsReserved: every node's addresses and pod CIDRs are reserved,
// merged; a pod CIDR that holds a node's address (0.0.0.0/0) reserves
// nothing.
func TestFactsReserved(t *testing.T) {
	st, err := ParseFile([]byte(`apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.244.1.0/24]}
status: {addresses: [{type: InternalIP, address: 172.30.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2, annotations: {skein.dev/underlay-ip: 172.31.0.12}}
spec: {podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"]}
status: {addresses: [{type: InternalIP, address: 172.30.0.12}, {type: ExternalIP, address: 198.51.100.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: greedy}
spec: {podCIDRs: [0.0.0.0/0]}
status: {addresses: [{type: InternalIP, address: 172.30.0.13}]}
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
	for _, p := range st.Seal().Facts().Reserved {
		got = append(got, p.String())
	}
	want := []string{"10.244.1.0/24", "10.244.2.0/24", "172.30.0.11/32", "172.30.0.12/31", "172.31.0.12/32", "198.51.100.12/32", "fd00:10:244:2::/64"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reserved (-want +got):\n%s", diff)
	}
	if _, err := st.Facts().PodCIDRs("broken"); err == nil {
		t.Error("a podCIDR that is not a network parsed")
	}
	if cidrs, err := st.Facts().PodCIDRs("node2"); err != nil || len(cidrs) != 2 {
		t.Errorf("node2's pod CIDRs: %v %v", cidrs, err)
	}
}
