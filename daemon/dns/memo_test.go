package dns

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// TestZoneFromLast: over random changes of Services (ClusterIP moved,
// made headless, deleted, made again) and their EndpointSlices, each
// zone built from the last one, as sources seal snapshots, names exactly
// what a zone built from nothing names: the same records by name, the
// same namespaces, the same reverse names.
func TestZoneFromLast(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	namespaces := []string{"a", "a-b", "b"}
	objs := clustertest.NewObjects()
	services, eslices := objs.Services, objs.Slices
	newService := func(ns, name string) *corev1.Service {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		switch rng.IntN(4) {
		case 0:
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		default: // a few addresses, so that two Services may share one
			svc.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", 1+rng.IntN(8))
		}
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		return svc
	}
	newSlice := func(ns, name, svc string) *discoveryv1.EndpointSlice {
		port, pname, proto := int32(8080), "http", corev1.ProtocolTCP
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
		for range rng.IntN(3) {
			host := fmt.Sprintf("h%d", rng.IntN(3))
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.0.%d", 1+rng.IntN(6))}, Hostname: &host})
		}
		return es
	}
	memo := NewMemo("cluster.local", 5)
	for step := range 1500 {
		for range 1 + rng.IntN(4) {
			ns, name := namespaces[rng.IntN(3)], fmt.Sprintf("s%d", rng.IntN(6))
			switch op := rng.IntN(10); {
			case op < 4:
				services[ns+"/"+name] = newService(ns, name)
			case op < 5:
				delete(services, ns+"/"+name)
			case op < 9:
				sl := fmt.Sprintf("%s-%d", name, rng.IntN(2))
				eslices[ns+"/"+sl] = newSlice(ns, sl, name)
			default:
				delete(eslices, ns+"/"+fmt.Sprintf("%s-%d", name, rng.IntN(2)))
			}
		}
		st := objs.Snapshot()
		got := memo.Build(st, uint32(step))
		want := NewMemo("cluster.local", 5).Build(st, uint32(step))
		if diff := cmp.Diff(zoneContents(want), zoneContents(got)); diff != "" {
			t.Fatalf("step %d: zone (-from nothing +from the last):\n%s", step, diff)
		}
	}
}

// contents is what a zone names, comparable.
type contents struct {
	Services   map[string]string
	Namespaces map[string]int
	Reverse    map[netip.Addr][]string
	// Counts are the maps' own counts of what they hold.
	Counts [3]int
}

func zoneContents(z *Zone) contents {
	c := contents{Services: map[string]string{}, Namespaces: map[string]int{}, Reverse: map[netip.Addr][]string{}}
	for _, m := range z.services.m {
		for k, s := range m {
			c.Services[k] = fmt.Sprint(s.addrs, s.hosts, s.srv, s.srvExtra, s.endpoints, s.ptrs)
		}
	}
	for _, m := range z.namespaces.m {
		maps.Copy(c.Namespaces, m)
	}
	for _, m := range z.reverse.m {
		maps.Copy(c.Reverse, m)
	}
	c.Counts = [3]int{z.services.len(), z.namespaces.len(), z.reverse.len()}
	return c
}

// TestMemoTriggers: the trigger times a memo hands out are those of the
// slices changed since it last did, each once.
func TestMemoTriggers(t *testing.T) {
	slice := func(name, at string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Labels:      map[string]string{discoveryv1.LabelServiceName: "web"},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: at}}}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"}}}
	a, b := slice("web-a", "t1"), slice("web-b", "t2")
	memo := NewMemo("cluster.local", 5)
	var prev *cluster.State
	for i, step := range []struct {
		slices []*discoveryv1.EndpointSlice
		want   []string
	}{
		{[]*discoveryv1.EndpointSlice{a, b}, []string{"t1", "t2"}},
		{[]*discoveryv1.EndpointSlice{a, b}, nil},
		{[]*discoveryv1.EndpointSlice{a, slice("web-b", "t3")}, []string{"t3"}},
		{[]*discoveryv1.EndpointSlice{slice("web-a", "t1"), b}, []string{"t2"}}, // web-a rewritten, same change
	} {
		st := &cluster.State{Services: []*corev1.Service{svc}, EndpointSlices: step.slices}
		prev = st.Seal(prev)
		memo.Build(st, uint32(i))
		got := memo.Triggers()
		slices.Sort(got)
		if !slices.Equal(step.want, got) {
			t.Errorf("step %d: trigger times %q, want %q", i, got, step.want)
		}
	}
}
