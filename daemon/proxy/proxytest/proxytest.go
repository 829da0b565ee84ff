// Package proxytest holds what the Service proxy's tests share across
// its packages (the model's and each backend's): the cluster every
// golden ruleset is rendered from, and a random churn of Services.
package proxytest

import (
	_ "embed"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// ClusterYAML is the cluster of the golden rulesets: node1 and node2,
// Services of every kind the proxy programs, and some it must leave out.
//
//go:embed cluster.yaml
var ClusterYAML string

// State is ClusterYAML's snapshot, edited first when edit is set.
func State(t testing.TB, edit func(string) string) *cluster.State {
	t.Helper()
	return clustertest.Parse(t, ClusterYAML, edit)
}

// RemoveEndpoint is the change of the partial-sync goldens: one endpoint
// of shop/web leaves its slice.
func RemoveEndpoint(s string) string {
	return strings.Replace(s, "- {addresses: [10.244.2.7], nodeName: node2, conditions: {ready: true}}\n", "", 1)
}

// LongName is a Service name of 250 characters, which no API server
// takes and a cluster file may hold.
var LongName = strings.Repeat("x", 250)

// HostileNames renames, in ClusterYAML, shop/web to "a b" (its slices
// follow) and shop/api to LongName.
func HostileNames(s string) string {
	s = strings.Replace(s, "name: web,", "name: a b,", 1)
	s = strings.ReplaceAll(s, "kubernetes.io/service-name: web}", "kubernetes.io/service-name: a b}")
	return strings.Replace(s, "name: api,", "name: "+LongName+",", 1)
}

// Churn is n Services on node1's cluster, changed at random: the same
// seed gives the same changes.
type Churn struct {
	rng     *rand.Rand
	svcs    []*corev1.Service
	eslices []*discoveryv1.EndpointSlice
}

// NewChurn renders every Service once.
func NewChurn(seed1, seed2 uint64, n int) *Churn {
	c := &Churn{rng: rand.New(rand.NewPCG(seed1, seed2)), svcs: make([]*corev1.Service, n), eslices: make([]*discoveryv1.EndpointSlice, n)}
	for i := range n {
		c.render(i)
	}
	return c
}

// Change renders one to four Services anew, or deletes them.
func (c *Churn) Change() {
	for range 1 + c.rng.IntN(4) {
		i := c.rng.IntN(len(c.svcs))
		if c.rng.IntN(5) == 0 && c.svcs[i] != nil {
			c.svcs[i] = nil
		} else {
			c.render(i)
		}
	}
}

// render makes Service i: now and then a NodePort several share, an
// external IP every such Service shares, session affinity, the Local
// traffic policy; endpoints on both nodes, ready or not, addresses
// repeated across Services (a local pod behind two).
func (c *Churn) render(i int) {
	rng := c.rng
	port, pname, proto := int32(8080), "http", corev1.ProtocolTCP
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i), Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", i+1),
			Ports: []corev1.ServicePort{{Name: pname, Port: 80, Protocol: proto}}}}
	if rng.IntN(3) == 0 {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = int32(30000 + rng.IntN(4))
	}
	if rng.IntN(3) == 0 {
		s.Spec.ExternalIPs = []string{"192.0.2.1"}
	}
	if rng.IntN(4) == 0 {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	if rng.IntN(4) == 0 {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	c.svcs[i] = s
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: s.Name + "-1", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
	for j := range rng.IntN(5) {
		node, ready := fmt.Sprintf("node%d", 1+rng.IntN(2)), rng.IntN(4) != 0
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.64.%d.%d", 1+j%2, rng.IntN(8))},
			NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	c.eslices[i] = es
}

// State is the snapshot now: node1 (pod CIDR 10.64.1.0/24) and the
// Services that exist.
func (c *Churn) State() *cluster.State {
	st := &cluster.State{Nodes: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}}}
	for i := range c.svcs {
		if c.svcs[i] != nil {
			st.Services = append(st.Services, c.svcs[i])
			st.EndpointSlices = append(st.EndpointSlices, c.eslices[i])
		}
	}
	return st
}
