package proxy

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// TestMemoOrder: the model's ports are sorted by Service whatever the
// snapshot's order, also when the order changes between builds.
func TestMemoOrder(t *testing.T) {
	st := clustertest.Big(12, 1)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	for step := range 4 {
		if step == 2 {
			slices.Reverse(st.Services)
		}
		if step == 3 {
			st.Services = append(st.Services[1:], st.Services[0])
		}
		m := memo.Build(st, cfg)
		if len(m.Ports) != 12 || !slices.IsSortedFunc(m.Ports, func(a, b *ServicePort) int {
			if c := cmp.Compare(a.Namespace+"/"+a.Service, b.Namespace+"/"+b.Service); c != 0 {
				return c
			}
			return -1 // twice
		}) {
			var names []string
			for _, sp := range m.Ports {
				names = append(names, sp.Name())
			}
			t.Fatalf("step %d: ports %v", step, names)
		}
	}
}

// TestMemoSlices: a Service's EndpointSlices replaced, added and removed
// between builds give, through the memo, what a build from nothing gives,
// from snapshots as sources seal them (indexed from the last) and as a
// test makes them; a build where nothing changed keeps every port as it
// was; and only the changed slices' trigger times are reported.
func TestMemoSlices(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		testMemoSlices(t, sealed)
	}
}

func testMemoSlices(t *testing.T, sealed bool) {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.11", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	slice := func(svc, name string, addrs ...string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns",
			Labels:      map[string]string{discoveryv1.LabelServiceName: svc},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: name + "@" + strings.Join(addrs, ",")}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
		}
		return es
	}
	a, b := slice("web", "web-a", "10.64.1.1"), slice("web", "web-b", "10.64.2.1", "10.64.2.2")
	c := slice("api", "api-a", "10.64.3.1")
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}
	cfg := Config{NodeName: "node1", Families: []int{4}}
	endpoints := func(m Model) map[string][]string {
		out := map[string][]string{}
		for _, sp := range m.Ports {
			for _, e := range sp.Endpoints {
				out[sp.ID()] = append(out[sp.ID()], e.AddrPort().String())
			}
			slices.Sort(out[sp.ID()])
		}
		return out
	}
	var memo Memo
	var last Model
	var prev *cluster.State
	a2 := slice("web", "web-a", "10.64.1.9")
	for i, step := range []struct {
		es       []*discoveryv1.EndpointSlice
		triggers []string
	}{
		{[]*discoveryv1.EndpointSlice{b, c, a}, []string{"api-a@10.64.3.1", "web-a@10.64.1.1", "web-b@10.64.2.1,10.64.2.2"}},     // two slices, listed out of order
		{[]*discoveryv1.EndpointSlice{c, a2, b}, []string{"web-a@10.64.1.9"}},                                                    // one replaced
		{[]*discoveryv1.EndpointSlice{c, b}, nil},                                                                                // one gone
		{[]*discoveryv1.EndpointSlice{a, c, b}, []string{"web-a@10.64.1.1"}},                                                     // back
		{[]*discoveryv1.EndpointSlice{a, c, b}, nil},                                                                             // nothing changed
		{[]*discoveryv1.EndpointSlice{c}, nil},                                                                                   // none left for web
		{[]*discoveryv1.EndpointSlice{c, a, b, b2}, []string{"web-a@10.64.1.1", "web-b@10.64.2.1,10.64.2.2", "web-c@10.64.4.1"}}, // a third slice
	} {
		st := &cluster.State{Nodes: []corev1.Node{node}, Services: []*corev1.Service{svc, other}, EndpointSlices: slices.Clone(step.es)}
		if sealed {
			st.SortByKey()
			prev = st.Seal(prev)
		}
		got := memo.Build(st, cfg)
		want := Build(st, cfg)
		if w, g := endpoints(want), endpoints(got); !reflect.DeepEqual(w, g) {
			t.Errorf("sealed %v, step %d: endpoints through the memo %v, from nothing %v", sealed, i, g, w)
		}
		slices.Sort(got.Triggers)
		if !slices.Equal(step.triggers, got.Triggers) {
			t.Errorf("sealed %v, step %d: trigger times %q, want %q", sealed, i, got.Triggers, step.triggers)
		}
		if i == 4 {
			for j := range got.Ports {
				if got.Ports[j] != last.Ports[j] {
					t.Errorf("step %d: port %s built again with nothing changed", i, got.Ports[j].ID())
				}
			}
		}
		last = got
	}
}

var b2 = func() *discoveryv1.EndpointSlice {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-c", Namespace: "ns",
		Labels:      map[string]string{discoveryv1.LabelServiceName: "web"},
		Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: "web-c@10.64.4.1"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.64.4.1"}}}}
}()

// TestOtherProxysServices: a Service labelled with another proxy's name
// gets no rules, and an EndpointSlice labelled headless gives no
// endpoints, as kube-proxy does; without the labels both are programmed.
func TestOtherProxysServices(t *testing.T) {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	ready := true
	build := func(svcLabels, sliceLabels map[string]string) Model {
		t.Helper()
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Labels: svcLabels},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
		labels := map[string]string{discoveryv1.LabelServiceName: "web"}
		for k, v := range sliceLabels {
			labels[k] = v
		}
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns", Labels: labels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}}
		st := &cluster.State{Services: []*corev1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{es}}
		var memo Memo
		return memo.Build(st, Config{NodeName: "node1", Families: []int{4}})
	}
	if m := build(nil, nil); len(m.Ports) != 1 || len(m.Ports[0].Endpoints) != 1 {
		t.Fatalf("without labels: %d ports", len(m.Ports))
	}
	if m := build(map[string]string{LabelProxyName: "another"}, nil); len(m.Ports) != 0 || len(m.Problems) != 0 {
		t.Errorf("another proxy's Service: %d ports, problems %v", len(m.Ports), m.Problems)
	}
	if m := build(nil, map[string]string{corev1.IsHeadlessService: ""}); len(m.Ports) != 1 || len(m.Ports[0].Endpoints) != 0 {
		t.Errorf("a slice labelled headless: ports %d, endpoints %v", len(m.Ports), m.Ports[0].Endpoints)
	}
}
