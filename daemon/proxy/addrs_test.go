package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// TestWithAddr: this node's --node-ip joins the nodes' reserved
// addresses in its place.
func TestWithAddr(t *testing.T) {
	st, err := cluster.ParseFile([]byte(clustertest.HostileNodes))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range withAddr(st.Facts().Reserved, netip.MustParseAddr("192.0.2.1")) {
		got = append(got, p.String())
	}
	want := []string{"10.244.1.0/24", "10.244.2.0/24", "172.30.0.11/32", "172.30.0.12/31", "172.31.0.12/32", "192.0.2.1/32", "198.51.100.12/32"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reserved (-want +got):\n%s", diff)
	}
}

// TestServiceAddressRules: a Service can never take a node's address, a
// pod network, loopback or link-local, nor a UDP NodePort on the VXLAN
// port; an endpoint can never be an address no pod has. Each is left
// out and reported; the rest of the Service stays.
func TestServiceAddressRules(t *testing.T) {
	svc := func(spec string) string {
		return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: %s\n", spec)
	}
	slice := func(addr string) string {
		return fmt.Sprintf(`---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s-1, namespace: shop, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
ports: [{port: 9000, protocol: UDP}]
endpoints: [{addresses: [%s], nodeName: node1}]
`, addr)
	}
	for _, tc := range []struct {
		name     string
		objects  string
		reason   string
		clusters []string // ClusterIP:port of the ports kept
		external []string
		nodePort uint16
		eps      []string
	}{
		{"externalIP of another node, on the VXLAN port",
			svc(`{clusterIP: 10.96.0.1, externalIPs: [172.30.0.12, 192.0.2.7], ports: [{port: 8472, protocol: UDP}]}`) + slice("10.244.1.5"),
			"reserved-address", []string{"10.96.0.1:8472"}, []string{"192.0.2.7"}, 0, []string{"10.244.1.5:9000"}},
		{"externalIP of a node's underlay annotation",
			svc(`{clusterIP: 10.96.0.1, externalIPs: [172.31.0.12], ports: [{port: 22}]}`),
			"reserved-address", []string{"10.96.0.1:22"}, nil, 0, nil},
		{"clusterIP of a node", svc(`{clusterIP: 172.30.0.11, ports: [{port: 8472, protocol: UDP}]}`), "reserved-address", nil, nil, 0, nil},
		{"clusterIP inside a pod network", svc(`{clusterIP: 10.244.2.7, ports: [{port: 80}]}`), "reserved-address", nil, nil, 0, nil},
		{"load-balancer IP of a node",
			svc(`{type: LoadBalancer, clusterIP: 10.96.0.1, ports: [{port: 80, nodePort: 30080}]}` + "\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.12}]}}"),
			"reserved-address", []string{"10.96.0.1:80"}, nil, 30080, nil},
		{"loopback clusterIP", svc(`{clusterIP: 127.0.0.2, ports: [{port: 80}]}`), "invalid-cluster-ip", nil, nil, 0, nil},
		{"link-local externalIP", svc(`{clusterIP: 10.96.0.1, externalIPs: [169.254.169.254], ports: [{port: 80}]}`), "invalid-external-ip", []string{"10.96.0.1:80"}, nil, 0, nil},
		{"UDP NodePort on the VXLAN port",
			svc(`{type: NodePort, clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP, nodePort: 8472}]}`),
			"overlay-port", []string{"10.96.0.1:53"}, nil, 0, nil},
		{"loopback endpoint", svc(`{clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP}]}`) + slice("127.0.0.1"),
			"invalid-endpoint-address", []string{"10.96.0.1:53"}, nil, 0, nil},
		{"link-local endpoint", svc(`{clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP}]}`) + slice("169.254.3.4"),
			"invalid-endpoint-address", []string{"10.96.0.1:53"}, nil, 0, nil},
		{"broadcast endpoint", svc(`{clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP}]}`) + slice("255.255.255.255"),
			"invalid-endpoint-address", []string{"10.96.0.1:53"}, nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := cluster.ParseFile([]byte(clustertest.HostileNodes + tc.objects))
			if err != nil {
				t.Fatal(err)
			}
			m := Build(st, Config{NodeName: "node1", Families: []int{4}, Reserved: st.Facts().Reserved, OverlayPort: 8472})
			var reasons []string
			for _, p := range m.Problems {
				reasons = append(reasons, p.Reason)
			}
			if !slices.Contains(reasons, tc.reason) {
				t.Errorf("problems %v, want one %q", m.Problems, tc.reason)
			}
			var clusters, external, eps []string
			var nodePort uint16
			for _, sp := range m.Ports {
				clusters = append(clusters, netip.AddrPortFrom(sp.ClusterIP, sp.Port).String())
				for _, a := range sp.External {
					external = append(external, a.String())
				}
				for _, e := range sp.Endpoints {
					eps = append(eps, e.AddrPort().String())
				}
				nodePort = sp.NodePort
			}
			if diff := cmp.Diff(tc.clusters, clusters); diff != "" {
				t.Errorf("ClusterIPs programmed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.external, external); diff != "" {
				t.Errorf("external addresses programmed (-want +got):\n%s", diff)
			}
			if nodePort != tc.nodePort {
				t.Errorf("NodePort %d, want %d", nodePort, tc.nodePort)
			}
			if diff := cmp.Diff(tc.eps, eps); diff != "" {
				t.Errorf("endpoints programmed (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMemoFollowsReserved: a node that comes to hold a Service's address
// takes the address out at once, and gives it back when it leaves;
// Services it does not concern keep their computed ports.
func TestMemoFollowsReserved(t *testing.T) {
	objects := clustertest.HostileNodes + `---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: shop}
spec: {clusterIP: 10.96.0.1, externalIPs: [172.30.0.99], ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: shop}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
`
	st, err := cluster.ParseFile([]byte(objects))
	if err != nil {
		t.Fatal(err)
	}
	var mm Memo
	cfg := Config{NodeName: "node1", Families: []int{4}, Reserved: st.Facts().Reserved}
	m1 := mm.Build(st, cfg)
	// A node with 172.30.0.99 joins: only a's port is computed again.
	joined := *st
	joined.Nodes = append(slices.Clone(st.Nodes), st.Nodes[0])
	joined.Nodes[3].Name = "node99"
	joined.Nodes[3].Status.Addresses = append(joined.Nodes[3].Status.Addresses[:0:0], st.Nodes[0].Status.Addresses[0])
	joined.Nodes[3].Status.Addresses[0].Address = "172.30.0.99"
	cfg.Reserved = joined.Facts().Reserved
	m2 := mm.Build(&joined, cfg)
	if len(m2.Ports[0].External) != 0 {
		t.Errorf("a keeps externalIP %v of a node", m2.Ports[0].External)
	}
	if m2.Ports[1].gen != m1.Ports[1].gen {
		t.Error("b was computed again though the node does not concern it")
	}
	cfg.Reserved = st.Facts().Reserved
	if m3 := mm.Build(st, cfg); len(m3.Ports[0].External) != 1 {
		t.Errorf("a did not get its externalIP back when the node left: %v", m3.Ports[0].External)
	}
}
