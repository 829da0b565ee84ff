// Package clustertest makes cluster snapshots for tests and benchmarks.
package clustertest

import (
	"testing"

	"encoding/json"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// Big is a cluster of one node, node1, and n Services with eps
// endpoints each, all on other nodes: the shape the benchmarks load. Its
// objects are listed in the order they were made (svc0, svc1, ... svc10):
// SortByKey puts them as a source does.
func Big(n, eps int) *cluster.State {
	st := &cluster.State{Nodes: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}}}
	port, name, proto := int32(8080), "http", corev1.ProtocolTCP
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc%d", i)
		st.Services = append(st.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: "bench"},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/256, i%256),
				Ports: []corev1.ServicePort{{Name: name, Port: 80, Protocol: proto}}}})
		es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: "bench",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}}
		for j := 0; j < eps; j++ {
			node := fmt.Sprintf("node%d", 2+j)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 100+j, i/256, i%256)}, NodeName: &node})
		}
		st.EndpointSlices = append(st.EndpointSlices, &es)
	}
	return st
}

// BigSnapshot is Big as a source sends it: in key order, sealed.
func BigSnapshot(n, eps int) *cluster.State {
	st := Big(n, eps)
	st.SortByKey()
	return st.Seal(nil)
}

// ListJSON is the snapshot as a cluster file: one JSON List.
func ListJSON(st *cluster.State) ([]byte, error) {
	var items []any
	for i := range st.Nodes {
		n := st.Nodes[i]
		n.Kind = "Node"
		items = append(items, n)
	}
	for _, s := range st.Services {
		c := *s
		c.Kind = "Service"
		items = append(items, c)
	}
	for _, e := range st.EndpointSlices {
		c := *e
		c.Kind = "EndpointSlice"
		items = append(items, c)
	}
	return json.Marshal(map[string]any{"kind": "List", "items": items})
}

// MoveEndpoint is the snapshot after st in which the first endpoint of
// the first slice has the i-th new address: as a source sends it, a new
// State holding an edited copy of the slice, sealed after st.
func MoveEndpoint(st *cluster.State, i int) *cluster.State {
	es := *st.EndpointSlices[0]
	es.Endpoints = append([]discoveryv1.Endpoint(nil), es.Endpoints...)
	es.Endpoints[0].Addresses = []string{fmt.Sprintf("10.99.%d.%d", i/256%256, i%256)}
	next := &cluster.State{Nodes: st.Nodes, Services: slices.Clone(st.Services),
		EndpointSlices: slices.Clone(st.EndpointSlices), ServiceCIDRs: st.ServiceCIDRs}
	next.EndpointSlices[0] = &es
	return next.Seal(st)
}

// HostileNodes are two good nodes, node1 and node2 (whose underlay is
// its annotation, with an ExternalIP besides), and a third, greedy,
// claiming every address as its pod network.
const HostileNodes = `apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.244.1.0/24]}
status: {addresses: [{type: InternalIP, address: 172.30.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2, annotations: {skein.dev/underlay-ip: 172.31.0.12}}
spec: {podCIDRs: [10.244.2.0/24]}
status: {addresses: [{type: InternalIP, address: 172.30.0.12}, {type: ExternalIP, address: 198.51.100.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: greedy}
spec: {podCIDRs: [0.0.0.0/0]}
status: {addresses: [{type: InternalIP, address: 172.30.0.13}]}
`

// Parse is the snapshot of a cluster file's text, edited first when edit
// is set; a file that does not parse fails the test.
func Parse(t testing.TB, text string, edit func(string) string) *cluster.State {
	t.Helper()
	if edit != nil {
		text = edit(text)
	}
	st, err := cluster.ParseFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Objects is a cluster a test changes at will, its Services and
// EndpointSlices by "namespace/name", and sends as a source does.
type Objects struct {
	Nodes    []corev1.Node
	Services map[string]*corev1.Service
	Slices   map[string]*discoveryv1.EndpointSlice
	last     *cluster.State
}

// NewObjects is a cluster of those nodes and nothing else.
func NewObjects(nodes ...corev1.Node) *Objects {
	return &Objects{Nodes: nodes, Services: map[string]*corev1.Service{}, Slices: map[string]*discoveryv1.EndpointSlice{}}
}

// Snapshot is the cluster now as a source sends it: a new State in key
// order, sealed after the last one.
func (o *Objects) Snapshot() *cluster.State {
	st := &cluster.State{Nodes: o.Nodes}
	for _, k := range slices.Sorted(maps.Keys(o.Services)) {
		st.Services = append(st.Services, o.Services[k])
	}
	for _, k := range slices.Sorted(maps.Keys(o.Slices)) {
		st.EndpointSlices = append(st.EndpointSlices, o.Slices[k])
	}
	o.last = st.Seal(o.last)
	return st
}
