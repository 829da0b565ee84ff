package cluster

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// CompareKeys orders objects by "namespace/name" as strings compare,
// the order of a sealed snapshot's Services and EndpointSlices (the
// informer cache's key order), without building the keys.
func CompareKeys(ns1, name1, ns2, name2 string) int {
	n := min(len(ns1), len(ns2))
	if c := strings.Compare(ns1[:n], ns2[:n]); c != 0 {
		return c
	}
	switch {
	case len(ns1) == len(ns2):
		return strings.Compare(name1, name2)
	case len(ns1) < len(ns2) && ns2[n] != '/':
		return compareByte('/', ns2[n])
	case len(ns2) < len(ns1) && ns1[n] != '/':
		return compareByte(ns1[n], '/')
	}
	// A namespace holding a slash: not a valid name, compared the slow way.
	return strings.Compare(ns1+"/"+name1, ns2+"/"+name2)
}

func compareByte(a, b byte) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareServices(a, b *corev1.Service) int {
	return CompareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
}

func compareSlices(a, b *discoveryv1.EndpointSlice) int {
	return CompareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
}

// Walk goes through two lists in one order (cmp's) side by side and
// calls visit(i, j) for each key: i indexes a and j b, -1 on the side
// without an item of that key. Items that are the same value are paired
// without calling cmp, so two snapshots that share most objects are
// walked at the cost of comparing pointers: at 10,000 Services a change
// costs microseconds, where a map of every name cost milliseconds.
func Walk[T comparable](a, b []T, cmp func(x, y T) int, visit func(i, j int)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case i == len(a):
			c = 1
		case j == len(b):
			c = -1
		case a[i] != b[j]:
			c = cmp(a[i], b[j])
		}
		switch {
		case c < 0:
			visit(i, -1)
			i++
		case c > 0:
			visit(-1, j)
			j++
		default:
			visit(i, j)
			i, j = i+1, j+1
		}
	}
}

// PairServices calls pair(i, j) for each Service of cur that has one of
// the same namespace and name in last (the same object, or another
// version of it), both lists in key order (two sealed snapshots', or a
// controller's memory of one).
func PairServices(last, cur []*corev1.Service, pair func(i, j int)) {
	Walk(last, cur, compareServices, func(j, i int) {
		if i >= 0 && j >= 0 {
			pair(i, j)
		}
	})
}

// Keep is the snapshot with only the Services keep(i) tells, indexed
// when s is: DNS withdraws the names of Services the next snapshot
// lacks before the proxy programs it.
func (s *State) Keep(keep func(i int) bool) *State {
	w := &State{Nodes: s.Nodes, EndpointSlices: s.EndpointSlices, ServiceCIDRs: s.ServiceCIDRs, facts: s.facts}
	var idx *sliceIndex
	if s.index != nil {
		idx = &sliceIndex{orphans: slices.Clip(s.index.orphans)}
	}
	for i, svc := range s.Services {
		switch {
		case keep(i):
			w.Services = append(w.Services, svc)
			if idx != nil {
				idx.of = append(idx.of, s.index.of[i])
			}
		case idx != nil:
			idx.orphans = append(idx.orphans, s.index.of[i]...)
		}
	}
	w.index = idx
	return w
}

// serviceOf is the Service an EndpointSlice belongs to, by its label.
func serviceOf(es *discoveryv1.EndpointSlice) (string, bool) {
	name := es.Labels[discoveryv1.LabelServiceName]
	return name, name != ""
}

// sliceIndex is each Service's EndpointSlices, aligned with a sealed
// snapshot's Services, each list sorted by name; orphans are the
// Services' slices whose Service is not in the snapshot (a slice may be
// written before its Service, and outlives it for a while).
type sliceIndex struct {
	of      [][]*discoveryv1.EndpointSlice
	orphans []*discoveryv1.EndpointSlice
}

// fullIndex indexes a snapshot in any order.
func fullIndex(s *State) sliceIndex {
	type key struct{ ns, name string }
	at := make(map[key]int, len(s.Services))
	for i, svc := range s.Services {
		if _, dup := at[key{svc.Namespace, svc.Name}]; !dup {
			at[key{svc.Namespace, svc.Name}] = i
		}
	}
	idx := sliceIndex{of: make([][]*discoveryv1.EndpointSlice, len(s.Services))}
	for _, es := range s.EndpointSlices {
		name, ok := serviceOf(es)
		if !ok {
			continue
		}
		if i, ok := at[key{es.Namespace, name}]; ok {
			idx.of[i] = append(idx.of[i], es)
		} else {
			idx.orphans = append(idx.orphans, es)
		}
	}
	for i, svc := range s.Services {
		if j := at[key{svc.Namespace, svc.Name}]; j != i {
			idx.of[i] = idx.of[j] // a second object of one name: the first's slices
		} else if len(idx.of[i]) > 1 && !slices.IsSortedFunc(idx.of[i], byName) {
			slices.SortFunc(idx.of[i], byName)
		}
	}
	return idx
}

func byName(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) }

// nextIndex indexes cur from prev's index: both sealed, so in key order,
// and from a source, so no two objects of a kind share a name.
// It costs a walk of both snapshots' pointers, and a binary search per
// EndpointSlice that changed.
func nextIndex(prev, cur *State) sliceIndex {
	idx := sliceIndex{of: make([][]*discoveryv1.EndpointSlice, len(cur.Services))}
	// A Service that stays keeps its slices; a Service gone leaves them
	// to the orphans, where a Service of its name finds them again.
	orphans := slices.Clone(prev.index.orphans)
	kept := make([]bool, len(prev.Services))
	PairServices(prev.Services, cur.Services, func(i, j int) { idx.of[i], kept[j] = prev.index.of[j], true })
	for j, k := range kept {
		if !k {
			orphans = append(orphans, prev.index.of[j]...)
		}
	}
	gone, added := changedSlices(prev.EndpointSlices, cur.EndpointSlices)
	if len(gone) > 0 {
		dead := make(map[*discoveryv1.EndpointSlice]bool, len(gone))
		for _, es := range gone {
			dead[es] = true
			if at, ok := cur.serviceAt(es); ok {
				idx.of[at] = slices.DeleteFunc(slices.Clone(idx.of[at]), func(e *discoveryv1.EndpointSlice) bool { return e == es })
			}
		}
		orphans = slices.DeleteFunc(orphans, func(e *discoveryv1.EndpointSlice) bool { return dead[e] })
	}
	for _, es := range slices.Concat(added, orphans) {
		at, ok := cur.serviceAt(es)
		if !ok {
			idx.orphans = append(idx.orphans, es)
			continue
		}
		idx.of[at] = append(slices.Clip(idx.of[at]), es)
		slices.SortFunc(idx.of[at], byName)
	}
	return idx
}

// changedSlices walks two key-ordered lists: the slices only in prev or
// changed (gone), and those only in cur or changed (added).
func changedSlices(prev, cur []*discoveryv1.EndpointSlice) (gone, added []*discoveryv1.EndpointSlice) {
	Walk(prev, cur, compareSlices, func(i, j int) {
		if i >= 0 && (j < 0 || prev[i] != cur[j]) {
			gone = appendLabelled(gone, prev[i])
		}
		if j >= 0 && (i < 0 || prev[i] != cur[j]) {
			added = appendLabelled(added, cur[j])
		}
	})
	return gone, added
}

func appendLabelled(to []*discoveryv1.EndpointSlice, es *discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	if _, ok := serviceOf(es); ok {
		return append(to, es)
	}
	return to
}

// serviceAt finds the Service an EndpointSlice belongs to in a sealed
// snapshot.
func (s *State) serviceAt(es *discoveryv1.EndpointSlice) (int, bool) {
	name, _ := serviceOf(es)
	return slices.BinarySearchFunc(s.Services, es, func(svc *corev1.Service, es *discoveryv1.EndpointSlice) int {
		return CompareKeys(svc.Namespace, svc.Name, es.Namespace, name)
	})
}

// ChangedTriggers appends to to the endpoints.kubernetes.io/
// last-change-trigger-time of each of a Service's EndpointSlices that is
// not among last, its slices before (a slice of the same name and time
// changed for another reason: the change it carries was counted).
func ChangedTriggers(to []string, cur, last []*discoveryv1.EndpointSlice) []string {
	for _, es := range cur {
		t := es.Annotations[corev1.EndpointsLastChangeTriggerTime]
		if t == "" {
			continue
		}
		if slices.ContainsFunc(last, func(o *discoveryv1.EndpointSlice) bool {
			return o == es || (o.Name == es.Name && o.Annotations[corev1.EndpointsLastChangeTriggerTime] == t)
		}) {
			continue
		}
		to = append(to, t)
	}
	return to
}

// ObserveTriggers gives observe the seconds from each trigger time
// (RFC 3339, as the EndpointSlice controller writes them) to now; a time
// that does not parse, or lies ahead (a skewed clock), is left out.
func ObserveTriggers(times []string, now time.Time, observe func(seconds float64)) {
	for _, t := range times {
		if at, err := time.Parse(time.RFC3339, t); err == nil && !at.After(now) {
			observe(now.Sub(at).Seconds())
		}
	}
}
