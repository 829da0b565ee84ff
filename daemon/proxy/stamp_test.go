package proxy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

// TestPortSetDiff: over random changes of dual-stack Services (ports
// added, renamed, dropped; Services deleted and made again; endpoints
// moved), the walk finds per family exactly the ports that are new
// objects and the IDs that went, as sets of every port would.
func TestPortSetDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	namespaces := []string{"a", "a-b", "b"}
	objs := clustertest.NewObjects(corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24", "fd00:64:1::/64"}}})
	services, eslices := objs.Services, objs.Slices
	cfg := Config{NodeName: "node1", Families: []int{4, 6}}
	var memo Memo
	sets := map[int]*PortSet{4: {}, 6: {}}
	last := map[int][]*ServicePort{}
	for step := range 1500 {
		for range 1 + rng.IntN(3) {
			ns, n := namespaces[rng.IntN(3)], rng.IntN(8)
			name := fmt.Sprintf("s%d", n)
			switch op := rng.IntN(10); {
			case op < 4:
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", 1+n), ClusterIPs: []string{fmt.Sprintf("10.96.0.%d", 1+n)}}}
				if rng.IntN(2) == 0 {
					svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, fmt.Sprintf("fd00:96::%d", 1+n))
				}
				for _, p := range []string{"http", "dns", "x"}[:1+rng.IntN(3)] {
					svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p, Port: 80, Protocol: corev1.ProtocolTCP})
					if rng.IntN(3) == 0 {
						svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p + "-u", Port: 80, Protocol: corev1.ProtocolUDP})
					}
				}
				services[ns+"/"+name] = svc
			case op < 6:
				delete(services, ns+"/"+name)
			default:
				port, pname, proto := int32(8080), "http", corev1.ProtocolTCP
				eslices[ns+"/"+name] = &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
					Labels: map[string]string{discoveryv1.LabelServiceName: name}}, AddressType: discoveryv1.AddressTypeIPv4,
					Ports:     []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
					Endpoints: []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.64.2.%d", 1+rng.IntN(9))}}}}
			}
		}
		m := memo.Build(objs.Snapshot(), cfg)
		for _, fam := range []int{4, 6} {
			fresh, gone := sets[fam].Diff(&m, fam)
			was := map[*ServicePort]bool{}
			for _, sp := range last[fam] {
				was[sp] = true
			}
			var wantFresh, gotFresh, wantGone []string
			now := map[string]bool{}
			var cur []*ServicePort
			for _, sp := range m.Ports {
				if sp.Family != fam {
					continue
				}
				cur, now[sp.ID()] = append(cur, sp), true
				if !was[sp] {
					wantFresh = append(wantFresh, sp.Name())
				}
			}
			for _, sp := range last[fam] {
				if !now[sp.ID()] {
					wantGone = append(wantGone, sp.ID())
				}
			}
			for _, sp := range fresh {
				gotFresh = append(gotFresh, sp.Name())
			}
			slices.Sort(wantGone)
			slices.Sort(gone)
			if diff := cmp.Diff(wantFresh, gotFresh); diff != "" {
				t.Fatalf("step %d, family %d: fresh ports (-want +got):\n%s", step, fam, diff)
			}
			if diff := cmp.Diff(wantGone, gone); diff != "" {
				t.Fatalf("step %d, family %d: gone ports (-want +got):\n%s", step, fam, diff)
			}
			last[fam] = cur
		}
	}
}
