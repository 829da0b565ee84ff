package cluster

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStoreListing: after any sequence of adds, updates, deletes and
// complete lists, the store lists exactly its objects in key order, each
// the latest written.
func TestStoreListing(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := newStore(func() {}, nil)
	want := map[string]*corev1.Service{}
	svc := func() *corev1.Service {
		ns := []string{"a", "a-b", "b", "kube-system"}[rng.IntN(4)]
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d", rng.IntN(60))}}
	}
	for step := range 3000 {
		switch op := rng.IntN(20); {
		case op < 12:
			s := svc()
			if err := st.put(s); err != nil {
				t.Fatal(err)
			}
			want[s.Namespace+"/"+s.Name] = s
		case op < 18:
			s := svc()
			if err := st.Delete(s); err != nil {
				t.Fatal(err)
			}
			delete(want, s.Namespace+"/"+s.Name)
		case op < 19:
			var list []any
			clear(want)
			for range rng.IntN(40) {
				s := svc()
				list = append(list, s)
				want[s.Namespace+"/"+s.Name] = s
			}
			// A list holds each key once.
			list = slices.DeleteFunc(list, func(o any) bool {
				s := o.(*corev1.Service)
				return want[s.Namespace+"/"+s.Name] != s
			})
			if err := st.Replace(list, ""); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(3) > 0 {
			continue // several changes between two listings
		}
		var wantList []*corev1.Service
		for _, k := range slices.Sorted(maps.Keys(want)) {
			wantList = append(wantList, want[k])
		}
		got := pointersOf[corev1.Service](st)
		if diff := cmp.Diff(wantList, got, cmp.Comparer(func(a, b *corev1.Service) bool { return a == b })); diff != "" {
			t.Fatalf("step %d: listing (-want +got):\n%s", step, diff)
		}
	}
}
