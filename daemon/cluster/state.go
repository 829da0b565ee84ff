package cluster

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// State is one complete snapshot of the cluster. Its objects are shared
// between readers and never modified. A Service or EndpointSlice that did
// not change since the previous snapshot is the same pointer in both (the
// informer's cache and the file source's item cache keep them), so a
// controller may memoize per object.
type State struct {
	Nodes          []corev1.Node
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// ServiceCIDRs are the ranges ClusterIPs are allocated from (with
	// Services, where the API server serves them).
	ServiceCIDRs []*networkingv1.ServiceCIDR
	facts        *Facts
	index        *sliceIndex
}

// Seal computes the snapshot's Facts and its index of each Service's
// EndpointSlices once. A source calls it before it sends the snapshot,
// with the snapshot it sent before (nil for the first): what did not
// change is indexed from it, which needs both snapshots' Services and
// EndpointSlices in key order ("namespace/name", as the API's caches
// list them; see SortByKey). From then on the State is only read, by
// every controller at once, which may rely on that order.
func (s *State) Seal(prev *State) *State {
	s.facts = newFacts(s)
	var idx sliceIndex
	if prev != nil && prev.index != nil {
		idx = nextIndex(prev, s)
	} else {
		idx = fullIndex(s)
	}
	s.index = &idx
	return s
}

// SortByKey puts the Services and EndpointSlices in key order, the first
// listed first among objects of one name.
func (s *State) SortByKey() {
	slices.SortStableFunc(s.Services, compareServices)
	slices.SortStableFunc(s.EndpointSlices, compareSlices)
}

// Sealed tells whether Seal indexed the snapshot: its Services are then
// in key order.
func (s *State) Sealed() bool { return s.index != nil }

// ServiceSlices is each Service's EndpointSlices (those labelled with
// its name), aligned with Services, each list sorted by name: computed
// by Seal, or now for a State that was not sealed (a test's). The lists
// are shared: not to be modified.
func (s *State) ServiceSlices() [][]*discoveryv1.EndpointSlice {
	if s.index != nil {
		return s.index.of
	}
	return fullIndex(s).of
}

// Facts returns what the snapshot's Nodes say to every controller:
// computed by Seal, or now for a State that was not sealed (a test's).
func (s *State) Facts() *Facts {
	if s.facts != nil {
		return s.facts
	}
	return newFacts(s)
}

// Node returns the node of that name.
func (s *State) Node(name string) (*corev1.Node, bool) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], true
		}
	}
	return nil, false
}

// Source produces snapshots. Run sends every new complete snapshot on
// updates until ctx ends; the first one only once the source has read the
// whole cluster.
type Source interface {
	Run(ctx context.Context, updates chan<- *State) error
}
