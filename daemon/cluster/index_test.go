package cluster

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCompareKeys: the order is that of the "namespace/name" strings.
func TestCompareKeys(t *testing.T) {
	names := []string{"a", "a-b", "a.b", "a0", "b", "kube-system", "ab", "a/x", ""}
	for _, ns1 := range names {
		for _, ns2 := range names {
			for _, n1 := range names[:5] {
				for _, n2 := range names[:5] {
					want := strings.Compare(ns1+"/"+n1, ns2+"/"+n2)
					if got := CompareKeys(ns1, n1, ns2, n2); got != want {
						t.Errorf("CompareKeys(%q, %q, %q, %q) = %d, want %d", ns1, n1, ns2, n2, got, want)
					}
				}
			}
		}
	}
}

// TestIndexFollows: over random changes of Services and EndpointSlices
// (slices written before their Service, outliving it, moving between
// Services, unlabelled), each sealed snapshot's index, built from the
// previous one's, is the one built from nothing.
func TestIndexFollows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	namespaces := []string{"a", "a-b", "b"}
	services := map[string]*corev1.Service{}
	eslices := map[string]*discoveryv1.EndpointSlice{}
	var prev *State
	for step := range 2000 {
		for range rng.IntN(6) {
			ns, n := namespaces[rng.IntN(3)], rng.IntN(12)
			switch op := rng.IntN(10); {
			case op < 3:
				services[ns+"/"+fmt.Sprint(n)] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint(n)}}
			case op < 4:
				delete(services, ns+"/"+fmt.Sprint(n))
			case op < 8:
				es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d-%d", n, rng.IntN(3))}}
				if rng.IntN(8) > 0 {
					es.Labels = map[string]string{discoveryv1.LabelServiceName: fmt.Sprint(rng.IntN(12))}
				}
				eslices[ns+"/"+es.Name] = es
			default:
				delete(eslices, ns+"/"+fmt.Sprintf("s%d-%d", n, rng.IntN(3)))
			}
		}
		st := &State{}
		for _, k := range slices.Sorted(maps.Keys(services)) {
			st.Services = append(st.Services, services[k])
		}
		for k := range eslices {
			st.EndpointSlices = append(st.EndpointSlices, eslices[k])
		}
		st.SortByKey()
		st.Seal(prev)
		want := fullIndex(st)
		same := cmp.Comparer(func(a, b *discoveryv1.EndpointSlice) bool { return a == b })
		if diff := cmp.Diff(want.of, st.ServiceSlices(), same, cmpEmpty); diff != "" {
			t.Fatalf("step %d: index (-want +got):\n%s", step, diff)
		}
		wantOrphans, gotOrphans := slices.Clone(want.orphans), slices.Clone(st.index.orphans)
		slices.SortFunc(wantOrphans, compareSlices)
		slices.SortFunc(gotOrphans, compareSlices)
		if diff := cmp.Diff(wantOrphans, gotOrphans, same, cmpEmpty); diff != "" {
			t.Fatalf("step %d: orphans (-want +got):\n%s", step, diff)
		}
		prev = st
	}
}

var cmpEmpty = cmp.FilterValues(func(a, b []*discoveryv1.EndpointSlice) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// TestPairServices: the walk pairs the Services of one name, the same
// object or not, and no others.
func TestPairServices(t *testing.T) {
	svc := func(ns, name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	a, ab, b, c, c2 := svc("a", "x"), svc("a-b", "x"), svc("b", "x"), svc("c", "x"), svc("c", "x")
	last := []*corev1.Service{ab, a, b, c}
	cur := []*corev1.Service{ab, a, c2, svc("d", "x")}
	var got [][2]int
	PairServices(last, cur, func(i, j int) { got = append(got, [2]int{i, j}) })
	if diff := cmp.Diff([][2]int{{0, 0}, {1, 1}, {2, 3}}, got); diff != "" {
		t.Errorf("pairs (-want +got):\n%s", diff)
	}
}

// TestKeep: a snapshot less some Services keeps the others' slices, and
// the slices of those left out wait as orphans.
func TestKeep(t *testing.T) {
	st := &State{}
	for _, n := range []string{"a", "b", "c"} {
		st.Services = append(st.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n}})
		st.EndpointSlices = append(st.EndpointSlices, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: n}}})
	}
	st.Seal(nil)
	w := st.Keep(func(i int) bool { return i != 1 })
	if !w.Sealed() || len(w.Services) != 2 || w.Services[1].Name != "c" {
		t.Fatalf("kept %v, sealed %v", w.Services, w.Sealed())
	}
	idx := w.ServiceSlices()
	if idx[0][0] != st.EndpointSlices[0] || idx[1][0] != st.EndpointSlices[2] || len(w.index.orphans) != 1 || w.index.orphans[0] != st.EndpointSlices[1] {
		t.Errorf("index %v, orphans %v", idx, w.index.orphans)
	}
	if diff := cmp.Diff(fullIndex(w).of, idx, cmp.Comparer(func(a, b *discoveryv1.EndpointSlice) bool { return a == b })); diff != "" {
		t.Errorf("index (-from nothing +kept):\n%s", diff)
	}
}

// TestWalk: every item of both lists is visited once, in order, those of
// one key together.
func TestWalk(t *testing.T) {
	a := []string{"a", "c", "d", "f"}
	b := []string{"b", "c", "e", "f", "g"}
	var got []string
	Walk(a, b, strings.Compare, func(i, j int) {
		x, y := "-", "-"
		if i >= 0 {
			x = a[i]
		}
		if j >= 0 {
			y = b[j]
		}
		got = append(got, x+y)
	})
	if diff := cmp.Diff([]string{"a-", "-b", "cc", "d-", "-e", "ff", "-g"}, got); diff != "" {
		t.Errorf("visits (-want +got):\n%s", diff)
	}
}

// TestObserveTriggers: each trigger time is observed as its age; one
// that does not parse or lies ahead is left out.
func TestObserveTriggers(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	var got []float64
	ObserveTriggers([]string{"2026-12-08T00:59:58Z", "yesterday", "2026-12-08T01:00:05Z", "2026-12-08T01:00:00Z"}, now,
		func(s float64) { got = append(got, s) })
	if diff := cmp.Diff([]float64{2, 0}, got); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}
