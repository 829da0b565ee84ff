package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestRelevantChange(t *testing.T) {
	base := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{"a": "b"}},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.30.0.11"}}},
	}
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	heartbeat.ResourceVersion = "2"
	if relevantChange(base, heartbeat) {
		t.Error("a status heartbeat counted as a change")
	}
	for name, mod := range map[string]func(*corev1.Node){
		"podCIDRs":   func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.9.0/24"} },
		"address":    func(n *corev1.Node) { n.Status.Addresses[0].Address = "172.30.0.99" },
		"annotation": func(n *corev1.Node) { n.Annotations["skein.dev/vtep-mac"] = "0e:00:00:00:00:01" },
		"zone label": func(n *corev1.Node) { n.Labels = map[string]string{corev1.LabelTopologyZone: "z1"} },
		"taint":      func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler"}} },
		"deletion":   func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{Time: time.Now()} },
	} {
		cur := base.DeepCopy()
		mod(cur)
		if !relevantChange(base, cur) {
			t.Errorf("a change of %s was ignored", name)
		}
	}
}

// TestKubeSourceServices: with Services on, snapshots carry Services and
// EndpointSlices, and a new slice brings a new snapshot.
func TestKubeSourceServices(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}},
	)
	ctx, updates := runSource(t, client)
	st := <-updates
	if len(st.Nodes) != 1 || len(st.Services) != 1 || len(st.EndpointSlices) != 0 {
		t.Fatalf("first snapshot: %d nodes, %d services, %d slices; want 1, 1, 0", len(st.Nodes), len(st.Services), len(st.EndpointSlices))
	}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case st = <-updates:
		case <-ctx.Done():
			t.Fatal("no snapshot with the new EndpointSlice")
		}
		if len(st.EndpointSlices) == 1 {
			return
		}
	}
}

// TestKubeSourceServiceCIDRs: ServiceCIDRs are read where the API
// server serves them; where it does not, snapshots come all the same.
func TestKubeSourceServiceCIDRs(t *testing.T) {
	for _, served := range []bool{true, false} {
		t.Run(fmt.Sprintf("served %t", served), func(t *testing.T) {
			client := fake.NewClientset(
				&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
				&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
					Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}},
			)
			if served {
				client.Resources = []*metav1.APIResourceList{{GroupVersion: "networking.k8s.io/v1",
					APIResources: []metav1.APIResource{{Name: "servicecidrs", Kind: "ServiceCIDR"}}}}
			}
			_, updates := runSource(t, client)
			st := <-updates
			want := 0
			if served {
				want = 1
			}
			if len(st.Nodes) != 1 || len(st.ServiceCIDRs) != want {
				t.Errorf("first snapshot: %d nodes, %d ServiceCIDRs; want 1, %d", len(st.Nodes), len(st.ServiceCIDRs), want)
			}
		})
	}
}

// TestKubeSourceStableOrder: snapshots list objects in a stable order, so
// a Service's change leaves the Nodes of the next snapshot equal to the
// last ones (skeind then wakes only the proxy), and a deleted object is
// gone from the next snapshot.
func TestKubeSourceStableOrder(t *testing.T) {
	var objs []runtime.Object
	for _, n := range []string{"n3", "n1", "n5", "n2", "n4"} {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	client := fake.NewClientset(objs...)
	ctx, updates := runSource(t, client)
	first := <-updates
	var names []string
	for _, n := range first.Nodes {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"n1", "n2", "n3", "n4", "n5"}, names); diff != "" {
		t.Errorf("node order (-want +got):\n%s", diff)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	next := waitSnapshot(ctx, t, updates, func(st *State) bool { return len(st.Services) == 1 })
	if !reflect.DeepEqual(first.Nodes, next.Nodes) {
		t.Error("a Service's creation changed the snapshot's Nodes")
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(ctx, t, updates, func(st *State) bool { return len(st.Nodes) == 4 })
}

// TestKubeSourceSnapshotGap: under a burst of changes snapshots come at
// most one a gap apart, while a change after a quiet spell is not held
// back.
func TestKubeSourceSnapshotGap(t *testing.T) {
	const gap = time.Second
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	ctx, updates := runSource(t, client, gap)
	<-updates
	var times []time.Time
	for i := range 50 {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: "default"}}
		if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for done := false; !done; {
		select {
		case st := <-updates:
			times = append(times, time.Now())
			done = len(st.Services) == 50
		case <-ctx.Done():
			t.Fatal("no snapshot with all 50 Services")
		}
	}
	// The first change goes out at once, the rest wait for the gap.
	if len(times) > 3 {
		t.Errorf("%d snapshots for a burst of 50 changes, want at most 3", len(times))
	}
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d < gap*9/10 {
			t.Errorf("snapshots %s apart under a burst, want at least %s", d, gap)
		}
	}
	time.Sleep(gap + gap/10)
	start := time.Now()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(ctx, t, updates, func(st *State) bool { return len(st.Services) == 51 })
	if d := time.Since(start); d > gap/2 {
		t.Errorf("a change after a quiet spell came %s later, want it at once", d)
	}
}

// runSource runs a KubeSource with Services on client until the test
// ends, and returns its context and snapshots.
func runSource(t *testing.T, client *fake.Clientset, gap ...time.Duration) (context.Context, <-chan *State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	updates := make(chan *State)
	src := &KubeSource{Client: client, Log: slog.New(slog.DiscardHandler), Services: true}
	if len(gap) > 0 {
		src.SnapshotGap = gap[0]
	}
	go func() { _ = src.Run(ctx, updates) }()
	return ctx, updates
}

func waitSnapshot(ctx context.Context, t *testing.T, updates <-chan *State, ok func(*State) bool) *State {
	t.Helper()
	for {
		select {
		case st := <-updates:
			if ok(st) {
				return st
			}
		case <-ctx.Done():
			t.Fatal("no snapshot with the change")
			return nil
		}
	}
}
