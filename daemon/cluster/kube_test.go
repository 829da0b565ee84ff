package cluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
