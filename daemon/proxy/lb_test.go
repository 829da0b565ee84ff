package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// ep is an endpoint of a test slice: address, node, ready, and its
// topology hints.
type ep struct {
	addr, node   string
	notReady     bool
	zones, nodes []string
}

// lbState is one Service "ns/web" (port http 80 -> 8080) and one slice
// of eps, with mod applied to the Service.
func lbState(mod func(*corev1.Service), eps ...ep) *cluster.State {
	pname, port, proto := "http", int32(8080), corev1.ProtocolTCP
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	if mod != nil {
		mod(svc)
	}
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
	for _, e := range eps {
		ready := !e.notReady
		d := discoveryv1.Endpoint{Addresses: []string{e.addr}, NodeName: &e.node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
		if e.zones != nil || e.nodes != nil {
			d.Hints = &discoveryv1.EndpointHints{}
			for _, z := range e.zones {
				d.Hints.ForZones = append(d.Hints.ForZones, discoveryv1.ForZone{Name: z})
			}
			for _, n := range e.nodes {
				d.Hints.ForNodes = append(d.Hints.ForNodes, discoveryv1.ForNode{Name: n})
			}
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return &cluster.State{Services: []*corev1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{es}}
}

func addrs(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Addr.String())
	}
	return out
}

// TestTrafficDistribution: the ClusterIP's endpoints follow the slices'
// hints as kube-proxy's do: node hints, then zone hints, each only when
// every ready endpoint has them and one is for here; else all.
func TestTrafficDistribution(t *testing.T) {
	cfg := Config{NodeName: "node1", Families: []int{4}, Zone: "a", Zones: []string{"a", "b"}}
	for _, tc := range []struct {
		name  string
		local bool // internalTrafficPolicy: Local
		eps   []ep
		want  []string
	}{
		{name: "no hints", eps: []ep{{addr: "10.64.1.1", node: "node1"}, {addr: "10.64.2.1", node: "node2"}},
			want: []string{"10.64.1.1", "10.64.2.1"}},
		{name: "zone hints", eps: []ep{{addr: "10.64.1.1", zones: []string{"a"}}, {addr: "10.64.2.1", zones: []string{"b"}}, {addr: "10.64.3.1", zones: []string{"a"}}},
			want: []string{"10.64.1.1", "10.64.3.1"}},
		{name: "an endpoint without hints", eps: []ep{{addr: "10.64.1.1", zones: []string{"a"}}, {addr: "10.64.2.1"}},
			want: []string{"10.64.1.1", "10.64.2.1"}},
		{name: "none for this zone", eps: []ep{{addr: "10.64.1.1", zones: []string{"b"}}, {addr: "10.64.2.1", zones: []string{"b"}}},
			want: []string{"10.64.1.1", "10.64.2.1"}},
		{name: "a not-ready endpoint without hints does not count", eps: []ep{{addr: "10.64.1.1", zones: []string{"a"}}, {addr: "10.64.2.1", notReady: true}, {addr: "10.64.3.1", zones: []string{"b"}}},
			want: []string{"10.64.1.1"}},
		{name: "node hints first", eps: []ep{{addr: "10.64.1.1", zones: []string{"a"}, nodes: []string{"node1"}}, {addr: "10.64.2.1", zones: []string{"a"}, nodes: []string{"node2"}}},
			want: []string{"10.64.1.1"}},
		{name: "node hints elsewhere, zone hints here", eps: []ep{{addr: "10.64.1.1", zones: []string{"a"}, nodes: []string{"node3"}}, {addr: "10.64.2.1", zones: []string{"b"}, nodes: []string{"node2"}}},
			want: []string{"10.64.1.1"}},
		{name: "internalTrafficPolicy Local wins", local: true, eps: []ep{{addr: "10.64.1.1", node: "node2", zones: []string{"a"}}, {addr: "10.64.2.1", node: "node1", zones: []string{"b"}}},
			want: []string{"10.64.2.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := lbState(func(s *corev1.Service) {
				if tc.local {
					p := corev1.ServiceInternalTrafficPolicyLocal
					s.Spec.InternalTrafficPolicy = &p
				}
			}, tc.eps...)
			m := Build(st, cfg)
			if len(m.Ports) != 1 {
				t.Fatalf("%d ports, problems %v", len(m.Ports), m.Problems)
			}
			if diff := cmp.Diff(tc.want, addrs(m.Ports[0].ClusterEndpoints())); diff != "" {
				t.Errorf("cluster endpoints (-want +got):\n%s", diff)
			}
			if len(m.Problems) != 0 {
				t.Errorf("problems: %v", m.Problems)
			}
		})
	}
	t.Run("a zone no node is in", func(t *testing.T) {
		m := Build(lbState(nil, ep{addr: "10.64.1.1", zones: []string{"mars"}}, ep{addr: "10.64.2.1", zones: []string{"a"}}), cfg)
		if diff := cmp.Diff([]string{"10.64.2.1"}, addrs(m.Ports[0].ClusterEndpoints())); diff != "" {
			t.Errorf("cluster endpoints (-want +got):\n%s", diff)
		}
		if len(m.Problems) != 1 || m.Problems[0].Reason != "unknown-zone-hint" {
			t.Errorf("problems: %v, want one unknown-zone-hint", m.Problems)
		}
	})
}

// TestIPModeProxy: a load-balancer ingress IP with ipMode Proxy is not
// taken on the node; VIP (and no mode) is.
func TestIPModeProxy(t *testing.T) {
	vip, prx := corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy
	m := Build(lbState(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
			{IP: "192.0.2.1"}, {IP: "192.0.2.2", IPMode: &vip}, {IP: "192.0.2.3", IPMode: &prx}}
	}, ep{addr: "10.64.1.1"}), Config{NodeName: "node1", Families: []int{4}})
	var got []string
	for _, a := range m.Ports[0].External {
		got = append(got, a.String())
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2"}, got); diff != "" {
		t.Errorf("external addresses (-want +got):\n%s", diff)
	}
}

// TestHealthChecks: a LoadBalancer Service with externalTrafficPolicy
// Local has a health check counting its ready endpoints on this node by
// address; bad ports are reported, a port two Services claim is the
// first's.
func TestHealthChecks(t *testing.T) {
	lbLocal := func(port int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = port
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "alt", Port: 81, NodePort: 30081, Protocol: corev1.ProtocolTCP})
		}
	}
	eps := []ep{{addr: "10.64.1.1", node: "node1"}, {addr: "10.64.1.2", node: "node1", notReady: true}, {addr: "10.64.2.1", node: "node2"}}
	cfg := Config{NodeName: "node1", Families: []int{4}}
	for _, tc := range []struct {
		name    string
		mod     func(*corev1.Service)
		want    []HealthCheck
		problem string
	}{
		{name: "local", mod: lbLocal(32000), want: []HealthCheck{{Namespace: "ns", Service: "web", Port: 32000, LocalReady: 1}}},
		{name: "cluster policy", mod: func(s *corev1.Service) {
			lbLocal(32000)(s)
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}},
		{name: "NodePort", mod: func(s *corev1.Service) { lbLocal(32000)(s); s.Spec.Type = corev1.ServiceTypeNodePort }},
		{name: "no port", mod: lbLocal(0), problem: "invalid-health-check-port"},
		{name: "out of range", mod: lbLocal(70000), problem: "invalid-health-check-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(lbState(tc.mod, eps...), cfg)
			if diff := cmp.Diff(tc.want, m.HealthChecks); diff != "" {
				t.Errorf("health checks (-want +got):\n%s", diff)
			}
			var reasons []string
			for _, p := range m.Problems {
				reasons = append(reasons, p.Reason)
			}
			if (tc.problem == "") != (len(reasons) == 0) || (tc.problem != "" && !slices.Equal(reasons, []string{tc.problem})) {
				t.Errorf("problems %v, want %q", m.Problems, tc.problem)
			}
		})
	}
	t.Run("shared port", func(t *testing.T) {
		st := lbState(lbLocal(32000), eps...)
		for _, name := range []string{"aaa", "zzz"} {
			s := st.Services[0].DeepCopy()
			s.Name = name
			s.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", 20+len(st.Services))
			st.Services = append(st.Services, s)
		}
		st.Services[2].Spec.HealthCheckNodePort = 32001
		m := Build(st, cfg)
		want := []HealthCheck{{Namespace: "ns", Service: "aaa", Port: 32000}, {Namespace: "ns", Service: "zzz", Port: 32001}}
		if diff := cmp.Diff(want, m.HealthChecks); diff != "" {
			t.Errorf("health checks (-want +got):\n%s", diff)
		}
		if len(m.Problems) != 1 || m.Problems[0].Reason != "health-check-port-taken" || m.Problems[0].Object != "Service ns/web" {
			t.Errorf("problems %v, want ns/web's port taken", m.Problems)
		}
	})
}

// TestServiceCIDRs: the Service ranges of the flag and of ServiceCIDR
// objects, merged; one over a pod network or a node's address, or not a
// CIDR, is reported and left out.
func TestServiceCIDRs(t *testing.T) {
	st := lbState(nil, ep{addr: "10.64.1.1"})
	st.ServiceCIDRs = []*networkingv1.ServiceCIDR{
		{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16", "fd00:96::/108"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pods"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.0.0.0/8"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"172.30.0.0/24"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "junk"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.97.0.0", "fe80::%eth0/64"}}},
	}
	cfg := Config{NodeName: "node1", Families: []int{4},
		Reserved:     []netip.Prefix{netip.MustParsePrefix("10.64.0.0/16"), netip.MustParsePrefix("172.30.0.11/32")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("10.98.0.1/12")}}
	m := Build(st, cfg)
	// 10.96.0.0/16 lies inside the flag's 10.96.0.0/12.
	want := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:96::/108")}
	if diff := cmp.Diff(want, m.ServiceCIDRs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Service ranges (-want +got):\n%s", diff)
	}
	var got []string
	for _, p := range m.Problems {
		got = append(got, p.Object+" "+p.Reason)
	}
	slices.Sort(got)
	wantProblems := []string{"ServiceCIDR junk invalid-service-cidr", "ServiceCIDR junk invalid-service-cidr",
		"ServiceCIDR node service-cidr-overlaps", "ServiceCIDR pods service-cidr-overlaps"}
	if diff := cmp.Diff(wantProblems, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
