package cluster

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	updates := make(chan *State)
	src := &KubeSource{Client: client, Log: slog.New(slog.DiscardHandler), Services: true}
	go func() { _ = src.Run(ctx, updates) }()
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
